//! Configurations parsed before the call: what the `configure` exports of
//! the `configurable-*` worlds keep.
//!
//! The host calls `configure` once per plugin version with the text its
//! manifest gives and keeps the instance's memory afterwards as the image
//! every fresh instance starts from (pre-initialisation). A call then finds
//! its configuration already parsed, if the text it is given is the text
//! that was kept; any other text (another tenant's configuration of the
//! same component, a host that never called `configure`) is parsed as
//! before. So keeping is only ever a saving, never a different answer.
//!
//! Each kept configuration is taken by the first call that asks for it
//! (every call has a fresh instance, so there is no second one; an instance
//! reused after all parses again).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::RefCell;
use serde::de::DeserializeOwned;

/// Configurations parsed ahead, by the name of the plugin they are for
/// (`""` for a component that is one plugin; a trigger's name in the set).
#[derive(Default)]
pub struct Kept {
    entries: Vec<Entry>,
}

struct Entry {
    name: String,
    text: String,
    parsed: Option<Box<dyn Any>>,
}

impl Kept {
    /// Nothing kept.
    pub const fn new() -> Kept {
        Kept {
            entries: Vec::new(),
        }
    }

    /// Parse `text` as `C` and keep it for `name` (replacing what was kept
    /// for it); the parse error otherwise, with nothing kept.
    pub fn keep<C: DeserializeOwned + Default + 'static>(
        &mut self,
        name: &str,
        text: &str,
    ) -> Result<(), String> {
        self.entries.retain(|e| e.name != name);
        let parsed: C = crate::parse_config(text)?;
        self.entries.push(Entry {
            name: name.into(),
            text: text.into(),
            parsed: Some(Box::new(parsed)),
        });
        Ok(())
    }

    /// The configuration kept for `name`, if it was parsed from exactly
    /// `text` as a `C` and no call took it yet.
    pub fn take<C: 'static>(&mut self, name: &str, text: &str) -> Option<C> {
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.name == name && e.text == text)?;
        let parsed = e.parsed.take()?;
        parsed.downcast::<C>().ok().map(|b| *b)
    }
}

#[cfg(target_arch = "wasm32")]
mod cell {
    #![allow(unsafe_code, reason = "a static needs Sync")]
    use super::{Kept, RefCell};

    pub(super) struct One(pub(super) RefCell<Kept>);
    // SAFETY: wasm32 components are single-threaded.
    unsafe impl Sync for One {}
    pub(super) static KEPT: One = One(RefCell::new(Kept::new()));
}

#[cfg(not(target_arch = "wasm32"))]
std::thread_local! {
    static KEPT: RefCell<Kept> = const { RefCell::new(Kept::new()) };
}

/// Run `f` on this instance's kept configurations (natively, this
/// thread's, for tests).
pub fn with<R>(f: impl FnOnce(&mut Kept) -> R) -> R {
    #[cfg(target_arch = "wasm32")]
    return f(&mut cell::KEPT.0.borrow_mut());
    #[cfg(not(target_arch = "wasm32"))]
    KEPT.with(|k| f(&mut k.borrow_mut()))
}

/// Keep `text` parsed as `C` for `name`: what a `configure` export does.
pub fn keep<C: DeserializeOwned + Default + 'static>(name: &str, text: &str) -> Result<(), String> {
    with(|k| k.keep::<C>(name, text))
}

/// The configuration for `name` given as `text`: the one kept for it if it
/// was kept from the same text, parsed now otherwise.
pub fn config<C: DeserializeOwned + Default + 'static>(
    name: &str,
    text: &str,
) -> Result<C, String> {
    match with(|k| k.take::<C>(name, text)) {
        Some(c) => Ok(c),
        None => crate::parse_config(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Limits {
        fuel: u32,
        names: BTreeMap<String, u32>,
    }

    #[test]
    fn a_kept_configuration_serves_only_its_own_text_name_and_type_once() {
        let mut k = Kept::new();
        k.keep::<Limits>("a", r#"{"fuel": 3}"#).unwrap();
        k.keep::<Limits>("b", r#"{"fuel": 4}"#).unwrap();
        // Other text, another name, another type: not served.
        assert_eq!(k.take::<Limits>("a", r#"{"fuel": 5}"#), None);
        assert_eq!(k.take::<Limits>("c", r#"{"fuel": 3}"#), None);
        assert_eq!(k.take::<u32>("a", r#"{"fuel": 3}"#), None);
        // The type asked wrongly above took it: a later take parses again.
        assert_eq!(k.take::<Limits>("a", r#"{"fuel": 3}"#), None);
        let b = k.take::<Limits>("b", r#"{"fuel": 4}"#).unwrap();
        assert_eq!(b.fuel, 4);
        assert_eq!(k.take::<Limits>("b", r#"{"fuel": 4}"#), None);
    }

    #[test]
    fn an_invalid_configuration_is_an_error_and_leaves_nothing_kept_for_its_name() {
        let mut k = Kept::new();
        k.keep::<Limits>("", r#"{"fuel": 1}"#).unwrap();
        let err = k.keep::<Limits>("", r#"{"fule": 1}"#).unwrap_err();
        assert!(err.contains("fule"), "{err}");
        // The earlier one was dropped with the attempt: nothing is served.
        assert_eq!(k.take::<Limits>("", r#"{"fuel": 1}"#), None);
    }

    #[test]
    fn config_falls_back_to_parsing_and_takes_what_was_kept() {
        keep::<Limits>("x", r#"{"fuel": 7}"#).unwrap();
        assert_eq!(config::<Limits>("x", r#"{"fuel": 7}"#).unwrap().fuel, 7);
        // Taken: the same text is now parsed, with the same result.
        assert_eq!(config::<Limits>("x", r#"{"fuel": 7}"#).unwrap().fuel, 7);
        assert_eq!(config::<Limits>("x", r#"{"fuel": 8}"#).unwrap().fuel, 8);
        assert!(config::<Limits>("x", r#"{"bad": 8}"#).is_err());
        assert_eq!(config::<Limits>("x", "").unwrap(), Limits::default());
    }
}
