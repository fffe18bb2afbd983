// The polyglot trigger, in C (wit-bindgen's C generator, Debian's clang for
// wasm32-wasi): escalate to high when an enterprise customer mentions a
// refund in a negative message (upstream sentiment at or below -0.3, or a
// negative word). The same logic is in tests/guests/refund (Rust),
// tests/polyglot/python and tests/polyglot/js.
//
// Each call runs in a fresh instance, so inputs are not freed; outputs are
// malloc'ed and freed by the generated post-return function.
#include "trigger.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *NEGATIVE[] = {"unacceptable", "terrible", "worst", "angry",
                                 "ridiculous", "furious", "disappointed"};

static char *lowered(const trigger_string_t *s) {
  char *out = malloc(s->len + 1);
  for (size_t i = 0; i < s->len; i++) out[i] = (char)tolower(s->ptr[i]);
  out[s->len] = 0;
  return out;
}

static void set(trigger_string_t *out, const void *bytes, size_t len) {
  out->ptr = malloc(len ? len : 1);
  memcpy(out->ptr, bytes, len);
  out->len = len;
}

// The byte length of the first `max` characters of UTF-8 text.
static size_t prefix_chars(const trigger_string_t *s, size_t max) {
  size_t chars = 0, end = 0;
  while (end < s->len) {
    if ((s->ptr[end] & 0xC0) != 0x80) {
      if (chars == max) break;
      chars++;
    }
    end++;
  }
  return end;
}

bool exports_trigger_evaluate(trigger_ticket_t *t, trigger_context_t *ctx,
                              trigger_evaluation_t *ret, trigger_string_t *err) {
  (void)ctx;
  (void)err;
  ret->signals.ptr = NULL;
  ret->signals.len = 0;
  ret->wake_at.is_some = false;
  if (!t->customer.is_some) return true;
  escalator_plugin_types_customer_t *c = &t->customer.val;
  if (c->plan.len != 10 || strncasecmp((const char *)c->plan.ptr, "enterprise", 10) != 0)
    return true;
  for (size_t i = 0; i < t->messages.len; i++) {
    escalator_plugin_types_message_t *m = &t->messages.ptr[i];
    if (m->author != ESCALATOR_PLUGIN_TYPES_AUTHOR_KIND_CUSTOMER) continue;
    char *text = lowered(&m->body);
    bool refund = strstr(text, "refund") != NULL;
    bool negative = m->sentiment.is_some && m->sentiment.val <= -0.3f;
    for (size_t w = 0; !negative && w < sizeof NEGATIVE / sizeof *NEGATIVE; w++)
      negative = strstr(text, NEGATIVE[w]) != NULL;
    free(text);
    if (!(refund && negative)) continue;

    escalator_plugin_types_signal_t *s = calloc(1, sizeof *s);
    s->action = ESCALATOR_PLUGIN_TYPES_SIGNAL_ACTION_ESCALATE;
    s->tier = ESCALATOR_PLUGIN_TYPES_TIER_HIGH;
    const char *key = "refund:enterprise-negative";
    set(&s->key, key, strlen(key));
    const char *tail = ", an enterprise customer, is upset about a refund";
    size_t n = c->name.len + strlen(tail);
    s->reason.ptr = malloc(n);
    memcpy(s->reason.ptr, c->name.ptr, c->name.len);
    memcpy(s->reason.ptr + c->name.len, tail, strlen(tail));
    s->reason.len = n;
    s->evidence.ptr = malloc(sizeof(trigger_string_t));
    s->evidence.len = 1;
    set(&s->evidence.ptr[0], m->body.ptr, prefix_chars(&m->body, 200));
    s->target_skill.is_some = true;
    set(&s->target_skill.val, "billing", 7);
    s->target_queue.is_some = false;
    ret->signals.ptr = s;
    ret->signals.len = 1;
    return true;
  }
  return true;
}
