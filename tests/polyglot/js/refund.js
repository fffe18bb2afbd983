// The polyglot trigger, in JavaScript (componentize-js): escalate to high
// when an enterprise customer mentions a refund in a negative message
// (upstream sentiment at or below -0.3, or a negative word). The same logic
// is in tests/guests/refund (Rust) and tests/polyglot/python.
const NEGATIVE = ["unacceptable", "terrible", "worst", "angry", "ridiculous", "furious", "disappointed"];

export function evaluate(ticket, ctx) {
  const c = ticket.customer;
  if (!c || c.plan.toLowerCase() !== "enterprise") {
    return { signals: [], wakeAt: undefined };
  }
  for (const m of ticket.messages) {
    if (m.author !== "customer") continue;
    const text = m.body.toLowerCase();
    if (!text.includes("refund")) continue;
    const negative = (m.sentiment !== undefined && m.sentiment <= -0.3) || NEGATIVE.some((w) => text.includes(w));
    if (negative) {
      return {
        signals: [{
          action: "escalate",
          tier: "high",
          key: "refund:enterprise-negative",
          reason: `${c.name}, an enterprise customer, is upset about a refund`,
          evidence: [Array.from(m.body).slice(0, 200).join("")],
          targetSkill: "billing",
          targetQueue: undefined,
        }],
        wakeAt: undefined,
      };
    }
  }
  return { signals: [], wakeAt: undefined };
}
