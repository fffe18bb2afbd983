# The polyglot trigger, in Python (componentize-py): escalate to high when an
# enterprise customer mentions a refund in a negative message (upstream
# sentiment at or below -0.3, or a negative word). The same logic is in
# tests/guests/refund (Rust) and tests/polyglot/js; all pass the same fixtures.
import wit_world
from wit_world.imports import types

NEGATIVE = ("unacceptable", "terrible", "worst", "angry", "ridiculous", "furious", "disappointed")

class WitWorld(wit_world.WitWorld):
    def evaluate(self, ticket, ctx):
        c = ticket.customer
        if c is None or c.plan.lower() != "enterprise":
            return types.Evaluation(signals=[], wake_at=None)
        for m in ticket.messages:
            if m.author != types.AuthorKind.CUSTOMER:
                continue
            text = m.body.lower()
            if "refund" not in text:
                continue
            if (m.sentiment is not None and m.sentiment <= -0.3) or any(w in text for w in NEGATIVE):
                sig = types.Signal(action=types.SignalAction.ESCALATE, tier=types.Tier.HIGH,
                    key="refund:enterprise-negative",
                    reason=c.name + ", an enterprise customer, is upset about a refund",
                    evidence=[m.body[:200]], target_skill="billing", target_queue=None)
                return types.Evaluation(signals=[sig], wake_at=None)
        return types.Evaluation(signals=[], wake_at=None)
