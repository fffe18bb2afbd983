//! Integration tests: real components built from this repository, loaded by
//! the real runtime, and the real `escalator` binary.

mod cli;
mod hostile;
mod loading;
mod playbook;
mod sandbox;
mod support;
