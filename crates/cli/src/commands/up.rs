//! `regiosync up` (run the node) and `regiosync status` (ask the running node).

use std::time::Duration;

use anyhow::Context;
use regiosync_net::Multiaddr;
use regiosync_node::service::{ServiceConfig, read_status, run_shared};
use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::output::{Output, one_line};

/// How old the status file may be before the node counts as not running.
pub(crate) const STALE_SECS: i64 = 10;

/// The options of `regiosync up`.
pub(crate) struct UpArgs {
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) peers: Vec<Multiaddr>,
    pub(crate) mdns: bool,
    pub(crate) relay: bool,
    pub(crate) announce: Vec<Multiaddr>,
    pub(crate) sync_interval: u64,
    /// The web app, unless `--no-web`.
    pub(crate) web: Option<WebArgs>,
}

/// Where and with which certificate the web app is served.
pub(crate) struct WebArgs {
    pub(crate) listen: std::net::SocketAddr,
    /// `--web-cert` and `--web-key`.
    pub(crate) cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The web app, set up before the node starts: certificate loaded (or generated)
/// and address bound, so that a problem with either stops `up` with a clear error.
pub(crate) struct WebServer {
    listener: std::net::TcpListener,
    tls: regiosync_web::tls::TlsSetup,
    /// Its address and certificate fingerprint, as `status` shows them.
    pub(crate) endpoint: regiosync_node::service::WebEndpoint,
}

pub(crate) fn prepare_web(dir: &std::path::Path, args: &WebArgs) -> anyhow::Result<WebServer> {
    use regiosync_web::tls::{CertSource, setup};
    let source = match &args.cert {
        Some((cert, key)) => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        None => CertSource::Generated {
            dir: dir.to_owned(),
        },
    };
    let tls = setup(&source).context("cannot set up the web app's certificate")?;
    if !args.listen.ip().is_loopback() && tls.self_signed {
        eprintln!(
            "warning: the web app listens on {} (reachable from other machines) with a self-signed certificate: browsers cannot tell it from an impostor's; give a real certificate with --web-cert/--web-key, or check the fingerprint below by hand",
            args.listen
        );
    }
    let listener = std::net::TcpListener::bind(args.listen).with_context(|| {
        format!(
            "cannot listen on {} for the web app: pick another address with --web-listen, or turn it off with --no-web",
            args.listen
        )
    })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let url = if addr.ip().is_unspecified() {
        format!("https://127.0.0.1:{}", addr.port())
    } else {
        format!("https://{addr}")
    };
    Ok(WebServer {
        listener,
        endpoint: regiosync_node::service::WebEndpoint {
            url,
            fingerprint: tls.fingerprint.clone(),
        },
        tls,
    })
}

pub(crate) fn up(global: &GlobalArgs, out: Output, args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        listen,
        peers,
        mdns,
        relay,
        announce,
        sync_interval,
        web,
    } = args;
    // A removed device has nobody to sync with: the reason, not a node that dials.
    if let Some(removal) = regiosync_node::Node::open(&super::data_dir(global)?)?.removal()? {
        return Err(regiosync_node::NodeError::Removed(removal).into());
    }
    let node = super::open_node(global)?;
    node.region_state()?; // a node outside a region has nobody to sync with
    // Before binding anything: a second `up` on this data dir is refused here.
    let lock = regiosync_node::run_lock::RunLock::acquire(node.dir())?;
    let web = web
        .as_ref()
        .map(|w| prepare_web(node.dir(), w))
        .transpose()?;
    let listen = if listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/4100".parse()?,
            "/ip4/0.0.0.0/udp/4100/quic-v1".parse()?,
        ]
    } else {
        listen
    };
    let config = ServiceConfig {
        listen,
        peers,
        mdns,
        relay,
        announce,
        sync_interval: Duration::from_secs(sync_interval),
        web: web.as_ref().map(|w| w.endpoint.clone()),
        ..ServiceConfig::default()
    };
    if let Some(w) = &web {
        let accounts = node.staff_accounts()?.len();
        let hint = if accounts == 0 {
            " (no staff accounts yet: add one with `regiosync user add NAME --role beheerder`)"
        } else {
            ""
        };
        out.note(&format!(
            "Web app: {}{hint}
Certificate SHA-256: {}{}",
            w.endpoint.url,
            w.endpoint.fingerprint,
            if w.tls.self_signed {
                " (self-signed: check that the browser shows this fingerprint)"
            } else {
                ""
            }
        ));
    }
    out.json_line(&serde_json::json!({
        "serving": {
            "node": node.info().node_id,
            "web": web.as_ref().map(|w| serde_json::json!({
                "url": w.endpoint.url,
                "fingerprint": w.endpoint.fingerprint,
                "self_signed": w.tls.self_signed,
            })),
        }
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping (signal received)");
            stop.cancel();
        });
        serve(node, config, web, cancel, lock).await
    })?;
    out.emit(&serde_json::json!({ "stopped": true }), || {
        "Node stopped.\n".into()
    })
}

/// Runs the node's sync service and, if given, its web app on the same node handle,
/// until `cancel`; the web app stops with the node (a signal, or an error). Shared by
/// `up` and `demo`. Must run inside a Tokio runtime.
pub(crate) async fn serve(
    node: regiosync_node::Node,
    config: ServiceConfig,
    web: Option<WebServer>,
    cancel: CancellationToken,
    lock: regiosync_node::run_lock::RunLock,
) -> anyhow::Result<()> {
    let node = std::sync::Arc::new(tokio::sync::Mutex::new(node));
    let web_task = match web {
        Some(w) => {
            let listener = tokio::net::TcpListener::from_std(w.listener)
                .context("cannot use the web app's address")?;
            let state = regiosync_web::AppState::new(
                node.clone(),
                regiosync_web::WebConfig {
                    hsts: !w.tls.self_signed,
                    ..regiosync_web::WebConfig::default()
                },
            );
            let app = regiosync_web::router(state);
            Some(tokio::spawn(regiosync_web::server::serve(
                listener,
                w.tls.config,
                app,
                cancel.child_token(),
            )))
        }
        None => None,
    };
    let result = run_shared(node, config, cancel.clone(), lock).await;
    cancel.cancel();
    if let Some(t) = web_task {
        let _ = t.await;
    }
    result.map_err(anyhow::Error::from)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) fn status(global: &GlobalArgs, out: Output) -> anyhow::Result<()> {
    let dir = super::data_dir(global)?;
    // Opening checks that this is a node, with a clear error otherwise.
    let node = regiosync_node::Node::open(&dir)?;
    if let Some(removal) = node.removal()? {
        return Err(regiosync_node::NodeError::Removed(removal).into());
    }
    let status = read_status(&dir)
        .filter(|s| now() - s.updated <= STALE_SECS)
        .with_context(|| {
            format!(
                "the node in {} is not running: start it with `regiosync up`",
                dir.display()
            )
        })?;
    out.emit(&status, || {
        let mut s = format!(
            "Node {}\nListening on: {}\n",
            one_line(&status.node_id),
            one_line(&status.listen.join(", "))
        );
        match &status.web {
            Some(w) => s.push_str(&format!(
                "Web app: {}\nCertificate SHA-256: {}\n",
                one_line(&w.url),
                one_line(&w.fingerprint)
            )),
            None => s.push_str("Web app: not served (--no-web)\n"),
        }
        s.push_str("\nMembers:\n");
        for (id, p) in &status.peers {
            let short = one_line(id.get(id.len().saturating_sub(8)..).unwrap_or(id));
            let how = |via: &Option<String>| match via.as_deref() {
                Some("relay") => " through a relay",
                Some(_) => " directly",
                None => "",
            };
            let state = if p.connected {
                format!("connected{}", how(&p.via))
            } else if p.refuses_this_device {
                "running, but refuses this device (its region log does not list this device yet: it catches up when it syncs with another member; or it banned this device for a few minutes)".into()
            } else if let Some(e) = &p.last_error {
                format!("not connected; last error: {}", one_line(e))
            } else {
                "offline (not reachable from here)".into()
            };
            s.push_str(&format!("  …{short}  {:<22} {state}\n", one_line(&p.party)));
            let seen = match (p.connected, p.last_seen) {
                (true, _) => String::new(),
                (false, Some(t)) => format!("last seen {}{}, ", super::human_time(t), how(&p.via)),
                (false, None) => "not seen since this node started, ".into(),
            };
            let contact = p
                .last_contact
                .map(super::human_time)
                .unwrap_or_else(|| "never".into());
            s.push_str(&format!("      {seen}last sync {contact}\n"));
            if p.last_contact.is_some() {
                let d = &p.docs;
                s.push_str(&format!(
                    "      plans: {} in sync, {} ahead, {} behind{}\n",
                    d.in_sync,
                    d.ahead.len(),
                    d.behind.len(),
                    if d.unlisted > 0 { format!(" ({} more not listed)", d.unlisted) } else { String::new() }
                ));
                for (what, ids) in [("ahead ", &d.ahead), ("behind", &d.behind)] {
                    for id in ids {
                        s.push_str(&format!("        {what} {id}\n"));
                    }
                }
                s.push_str(&format!(
                    "      dossiers: {} shared with it; last sync: {} items received, {} sent\n",
                    p.dossiers_shared, p.dossier_items_received, p.dossier_items_sent
                ));
            }
        }
        s.push_str(&format!("\nDossiers held here: {}\n", status.dossiers_held));
        if status.dossiers_unreached_count > 0 {
            s.push_str(&format!(
                "  {} cannot reach a party now: no device of the party is connected and no dossier relay is. They go out when one connects; an always-on node designated with `regiosync relay designate` carries them meanwhile.\n",
                status.dossiers_unreached_count
            ));
            for u in &status.dossiers_unreached {
                s.push_str(&format!("    {}  waiting for {}\n", u.dossier, one_line(&u.party)));
            }
            let more = status.dossiers_unreached_count.saturating_sub(status.dossiers_unreached.len());
            if more > 0 {
                s.push_str(&format!("    ({more} more not listed)\n"));
            }
        }
        s.push_str("\n(ahead: changes here the peer is not known to hold yet; behind: the peer holds changes this node lacks)\n");
        s
    })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
