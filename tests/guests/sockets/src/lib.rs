//! A trigger that tries to phone home. It loads (sockets are linked) but
//! every connection attempt must be denied.

use escalator_guest::prelude::*;

/// The plugin.
pub struct PhoneHome;

impl Trigger for PhoneHome {
    type Config = ();

    fn evaluate(ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Err(format!("connected while evaluating {}", ticket.id)),
            Err(e) => Err(format!("could not connect: {e}")),
        }
    }
}

escalator_guest::export_trigger!(PhoneHome);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_succeeds_natively_on_the_discard_port() {
        let r = PhoneHome::evaluate(
            &escalator_guest::testing::ticket(),
            &Ctx::new(0, EventKind::Tick, ()),
        );
        assert!(r.is_err());
    }
}
