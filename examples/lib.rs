//! Runnable examples: `cargo run -p regiosync-examples --example jeugdplan`.
