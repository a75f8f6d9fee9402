//! Integration tests: one binary that starts the real server on port 0
//! (`helpers::spawn_app`) and talks HTTP to it, with fake upstreams on
//! 127.0.0.1 where a test needs them. Logs stay quiet unless `TEST_LOG` is
//! set.

mod bigquery;
mod cli;
mod helpers;
mod hostile;
mod routes;
mod server;
