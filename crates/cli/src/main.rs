//! The `regiosync` command-line tool. See the README for a quickstart and
//! docs/ARCHITECTURE.md for how the crates fit together.
//!
//! Exit codes: 0 success, 1 error, 2 usage error.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI prints

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use cli::{Cli, Command};
use output::Output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let json = std::env::args_os().any(|a| a == "--json");
            if json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // The whole message up to clap's usage line, on one line: "the
                // following required arguments were not provided: <ID>" names them.
                let msg = e.render().to_string();
                let text = msg
                    .lines()
                    .take_while(|l| {
                        !l.starts_with("Usage:") && !l.starts_with("For more information")
                    })
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let text = text.trim_start_matches("error: ");
                Output { json: true }
                    .error("usage", if text.is_empty() { "usage error" } else { text });
                return ExitCode::from(2);
            }
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let long_running = matches!(cli.command, Command::Up { .. });
    init_tracing(cli.global.verbose, long_running);
    // Once, before any TLS configuration is built (both ring and aws-lc-rs are
    // compiled in through the dependency tree, so rustls cannot choose by itself).
    regiosync_web::tls::install_crypto_provider();
    let out = Output {
        json: cli.global.json,
    };
    let result = match cli.command {
        Command::Init { party, role } => commands::init::run(&cli.global, out, party, role),
        Command::Doc(cmd) => commands::doc::run(&cli.global, out, cmd),
        Command::Dossier { user, cmd } => {
            commands::dossier::run(&cli.global, out, user.as_deref(), cmd)
        }
        Command::Audit { verify } => commands::dossier::audit(&cli.global, out, verify),
        Command::Region(cmd) => commands::region::region(&cli.global, out, cmd),
        Command::Invite {
            party,
            role,
            admin,
            expires,
            addrs,
        } => commands::region::invite(&cli.global, out, party, role, admin, expires, addrs),
        Command::Join {
            code,
            request_out: Some(request_out),
            ..
        } => commands::region::join(&cli.global, out, &code, &request_out),
        Command::Join {
            code,
            request_out: None,
            peer,
            timeout,
        } => commands::region::join_network(&cli.global, out, &code, &peer, timeout),
        Command::Accept {
            request,
            out: bundle,
        } => commands::region::accept(&cli.global, out, &request, &bundle),
        Command::Import { bundle } => commands::region::import(&cli.global, out, &bundle),
        Command::Export { out: path } => commands::region::export(&cli.global, out, &path),
        Command::Party(cmd) => commands::region::party(&cli.global, out, cmd),
        Command::Up {
            listen,
            peer,
            no_mdns,
            relay,
            announce,
            sync_interval,
            web_listen,
            no_web,
            web_cert,
            web_key,
        } => commands::up::up(
            &cli.global,
            out,
            commands::up::UpArgs {
                listen,
                peers: peer,
                mdns: !no_mdns,
                relay,
                announce,
                sync_interval,
                web: (!no_web).then_some(commands::up::WebArgs {
                    listen: web_listen,
                    cert: web_cert.zip(web_key),
                }),
            },
        ),
        Command::User(cmd) => commands::user::run(&cli.global, out, cmd),
        Command::Status => commands::up::status(&cli.global, out),
        Command::Demo { duration, dir } => commands::demo::run(out, duration, dir),
        Command::Device(cmd) => commands::region::device(&cli.global, out, cmd),
        Command::Relay(cmd) => commands::region::relay(&cli.global, out, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            out.error("error", &one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, without repeating a cause the message
/// already contains.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg.replace('\n', " ")
}

fn init_tracing(verbose: u8, long_running: bool) {
    // A running node logs what it does (connections, sync) by default.
    let default = match (verbose, long_running) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info,libp2p=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal (and never with NO_COLOR set): a log file or a
    // journal gets plain text, not escape sequences.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}
