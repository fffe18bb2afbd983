//! Machine-readable error codes: every error answer of the API carries one
//! beside its message (`{"error": "...", "code": "ticket.not_found"}`).
//! Codes are stable: clients match them, never the message, which is for
//! people and may change. The OpenAPI description lists them all.

/// A ticket id that is empty or otherwise unusable.
pub const TICKET_INVALID: &str = "ticket.invalid";
/// No such ticket in this tenant.
pub const TICKET_NOT_FOUND: &str = "ticket.not_found";
/// A ticket with this id exists: add events to it instead.
pub const TICKET_EXISTS: &str = "ticket.exists";
/// An event with an out-of-range value (confidence, score, ...).
pub const EVENT_INVALID: &str = "event.invalid";
/// The event was stored, but deciding on it failed; it is marked failed.
pub const EVENT_FAILED: &str = "event.failed";
/// An idempotency key reused for a different request.
pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency.key_reused";
/// The first request with this idempotency key is still being decided.
pub const IDEMPOTENCY_IN_PROGRESS: &str = "idempotency.in_progress";
/// An agent that does not convert (empty id, unknown time zone, ...).
pub const AGENT_INVALID: &str = "agent.invalid";
/// No such agent in this tenant.
pub const AGENT_NOT_FOUND: &str = "agent.not_found";
/// An upload refused: bad manifest or component, failed fixture, quota.
pub const PLUGIN_REFUSED: &str = "plugin.refused";
/// A plugin change that is malformed (an unknown mode, ...).
pub const PLUGIN_INVALID: &str = "plugin.invalid";
/// No such plugin, or no such version of it.
pub const PLUGIN_NOT_FOUND: &str = "plugin.not_found";
/// The change conflicts with what serves (two active routers, the
/// version in use, other bytes under the same version, nothing to roll
/// back to).
pub const PLUGIN_CONFLICT: &str = "plugin.conflict";
/// The body is not valid JSON, or not the JSON this endpoint takes.
pub const BODY_INVALID_JSON: &str = "body.invalid_json";
/// The body is larger than the server takes.
pub const BODY_TOO_LARGE: &str = "body.too_large";
/// A request that is well-formed but not acceptable (a value out of
/// range, a bad query parameter, ...).
pub const REQUEST_INVALID: &str = "request.invalid";
/// A malformed request (a bad header, path or query).
pub const REQUEST_MALFORMED: &str = "request.malformed";
/// No token, or a token that is unknown or revoked.
pub const AUTH_UNAUTHORIZED: &str = "auth.unauthorized";
/// A token that may not do this (a tenant's token on an admin route).
pub const AUTH_FORBIDDEN: &str = "auth.forbidden";
/// No such path or resource.
pub const NOT_FOUND: &str = "not_found";
/// The path takes other methods (see `Allow`).
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
/// The request conflicts with what exists.
pub const CONFLICT: &str = "conflict";
/// Over a rate or a budget: retry after `Retry-After` seconds.
pub const RATE_LIMITED: &str = "rate.limited";
/// Over a quota (webhooks, plugins, feeds, connections).
pub const QUOTA_EXCEEDED: &str = "quota.exceeded";
/// The server is busy or shutting down: retry.
pub const UNAVAILABLE: &str = "unavailable";
/// Our fault; the message says no more than that.
pub const INTERNAL: &str = "internal";

/// Every code, with what it means: the OpenAPI description's list.
pub const ALL: &[(&str, &str)] = &[
    (TICKET_INVALID, "a ticket id that is empty or unusable"),
    (TICKET_NOT_FOUND, "no such ticket in this tenant"),
    (TICKET_EXISTS, "a ticket with this id exists"),
    (EVENT_INVALID, "an event with an out-of-range value"),
    (
        EVENT_FAILED,
        "the event was stored, but deciding on it failed",
    ),
    (
        IDEMPOTENCY_KEY_REUSED,
        "an idempotency key reused for another request",
    ),
    (
        IDEMPOTENCY_IN_PROGRESS,
        "the first request with this key is being decided",
    ),
    (AGENT_INVALID, "an agent that does not convert"),
    (AGENT_NOT_FOUND, "no such agent in this tenant"),
    (PLUGIN_REFUSED, "an upload refused"),
    (PLUGIN_INVALID, "a malformed plugin change"),
    (PLUGIN_NOT_FOUND, "no such plugin or version"),
    (PLUGIN_CONFLICT, "the change conflicts with what serves"),
    (
        BODY_INVALID_JSON,
        "the body is not the JSON this endpoint takes",
    ),
    (BODY_TOO_LARGE, "the body is larger than the server takes"),
    (REQUEST_INVALID, "a well-formed but unacceptable request"),
    (REQUEST_MALFORMED, "a malformed request"),
    (AUTH_UNAUTHORIZED, "no token, or an unknown or revoked one"),
    (AUTH_FORBIDDEN, "a token that may not do this"),
    (NOT_FOUND, "no such path or resource"),
    (METHOD_NOT_ALLOWED, "the path takes other methods"),
    (CONFLICT, "the request conflicts with what exists"),
    (
        RATE_LIMITED,
        "over a rate or budget; retry after Retry-After",
    ),
    (QUOTA_EXCEEDED, "over a quota"),
    (UNAVAILABLE, "busy or shutting down; retry"),
    (INTERNAL, "our fault"),
];
