//! Integration tests: real components built from this repository, loaded by
//! the real runtime, and the real `escalator` binary.

// First: its macros (`on_both_backends!`) serve the modules after it.
#[macro_use]
mod support;
mod browser;
mod cli;
mod configured;
mod connectors;
mod defaults;
mod differential;
mod fuzz;
mod hostile;
mod ingest;
mod isolation;
mod learn;
mod lifecycle;
mod loading;
mod outbound;
mod peers;
mod pgstore;
mod plans;
mod playbook;
mod polyglot;
mod quotas;
mod replay;
mod sandbox;
mod scaleout;
mod scheduler;
mod serve;
mod store;
mod triggerset;
mod tune;
