//! The command-line grammar (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use regiosync_core::dossier::DossierField;
use regiosync_core::dossier::access::Basis;
use regiosync_core::id::{PartyName, Role};
use regiosync_core::plan::{AgreementStatus, PlanKind};
use regiosync_node::Audience;

/// regiosync: peer-to-peer, offline-first sync of regional plans and sealed student
/// dossiers between partners in education and youth care.
#[derive(Debug, Parser)]
#[command(
    name = "regiosync",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags accepted before or after any subcommand.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The node's data dir [default: $REGIOSYNC_HOME, else the platform data dir]
    #[arg(long, global = true, value_name = "DIR", env = "REGIOSYNC_HOME")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print one JSON value instead of human output
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// File whose first line is the passphrase of the node's key file
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "REGIOSYNC_PASSPHRASE_FILE"
    )]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new node (keys and store) in the data dir
    Init {
        /// The party (organisation) this device belongs to, e.g. gemeente-zeist
        #[arg(long, value_parser = parse_party)]
        party: PartyName,
        /// The party's role
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Work with documents (plans)
    #[command(subcommand)]
    Doc(DocCommand),
    /// Sealed student dossiers (synced only to the parties with access and to dossier relays)
    Dossier {
        /// A name for the audit log, recorded as declared beside the OS user that runs
        /// the command (the web app records the signed-in account instead)
        #[arg(long, global = true, value_name = "NAME")]
        user: Option<String>,
        #[command(subcommand)]
        cmd: DossierCommand,
    },
    /// The audit log of dossier reads and writes on this node
    Audit {
        /// Check that the hash chain is intact (exit 1 if not)
        #[arg(long)]
        verify: bool,
    },
    /// Found or inspect the region
    #[command(subcommand)]
    Region(RegionCommand),
    /// Invite a device (of a new or existing party) into the region: prints a one-time code
    Invite {
        /// The party the new device will belong to
        #[arg(long, value_parser = parse_party)]
        party: PartyName,
        /// That party's role
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Make the party a region admin (a new party only)
        #[arg(long)]
        admin: bool,
        /// How long the code is valid, e.g. 30m, 12h, 7d
        #[arg(long, default_value = "7d", value_parser = parse_duration)]
        expires: i64,
        /// Address where the new device can reach this node (repeatable), e.g.
        /// /dns4/regiosync.roc.example/tcp/4100 [default: the running node's listen addresses]
        #[arg(long = "addr", value_name = "MULTIADDR")]
        addrs: Vec<regiosync_net::Multiaddr>,
    },
    /// On a new node: join a region with an invite code, over the network (the
    /// inviter's node must be running) or with files (--request-out)
    Join {
        /// The invite code (regiosync-invite-1:…)
        code: String,
        /// Do not connect: write the signed join request to this file instead (carry it
        /// to the inviter, who runs `regiosync accept`)
        #[arg(long, value_name = "FILE")]
        request_out: Option<PathBuf>,
        /// Another address of the inviter's node to try (repeatable)
        #[arg(long, value_name = "MULTIADDR")]
        peer: Vec<regiosync_net::Multiaddr>,
        /// Give up reaching the inviter after this many seconds
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
        timeout: u64,
    },
    /// On the inviter's node: accept a join request and write the region's log
    Accept {
        /// The join request file
        request: PathBuf,
        /// Where to write the bundle for the new node
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
    },
    /// Import a bundle of the region's control log (completes a join)
    Import {
        /// The bundle file
        bundle: PathBuf,
    },
    /// Export the region's control log to a bundle file
    Export {
        /// Where to write the bundle
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
    },
    /// Run the node in the foreground: sync with the region's members until Ctrl-C
    Up {
        /// Address to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/4100 and /ip4/0.0.0.0/udp/4100/quic-v1]
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<regiosync_net::Multiaddr>,
        /// Address of a member to dial at start (repeatable), e.g. /ip4/192.0.2.7/tcp/4100
        #[arg(long, value_name = "MULTIADDR")]
        peer: Vec<regiosync_net::Multiaddr>,
        /// Do not look for members on the local network (mDNS)
        #[arg(long)]
        no_mdns: bool,
        /// Relay connections between members that cannot reach each other directly
        /// (circuit relay v2; for an always-on node with a reachable address). Members
        /// find it by themselves once connected, and switch to a direct connection
        /// where their NATs allow (DCUtR)
        #[arg(long)]
        relay: bool,
        /// Stable address members should dial to reach this node (repeatable),
        /// published in the region log, e.g. /dns4/regiosync.roc.example/tcp/4100 for an
        /// always-on node behind a port forward [default: publish nothing]
        #[arg(long, value_name = "MULTIADDR")]
        announce: Vec<regiosync_net::Multiaddr>,
        /// Sync with every connected member at least this often, in seconds
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        sync_interval: u64,
        /// Where the web app listens (HTTPS)
        #[arg(long, value_name = "ADDR", default_value = regiosync_web::DEFAULT_LISTEN)]
        web_listen: std::net::SocketAddr,
        /// Do not serve the web app
        #[arg(long, conflicts_with_all = ["web_listen", "web_cert", "web_key"])]
        no_web: bool,
        /// The web app's certificate chain (PEM), e.g. a PKIoverheid certificate
        /// [default: one generated in the data dir at first start]
        #[arg(long, value_name = "FILE", requires = "web_key")]
        web_cert: Option<PathBuf>,
        /// The private key (PEM) of --web-cert
        #[arg(long, value_name = "FILE", requires = "web_cert")]
        web_key: Option<PathBuf>,
    },
    /// Staff accounts of this node's web app
    #[command(subcommand)]
    User(UserCommand),
    /// Show the running node's peers and their sync state
    Status,
    /// Start a five-party region on this machine (loopback only), each node with its
    /// web app, show it converge, and keep it running for the browser
    Demo {
        /// Keep the region running this many seconds after the scenario (0: stop at
        /// once) [default: until Ctrl-C]
        #[arg(long)]
        duration: Option<u64>,
        /// Put the five nodes here instead of a temporary folder (kept afterwards)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Parties of the region
    #[command(subcommand)]
    Party(PartyCommand),
    /// Devices of the region
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Dossier relays: always-on nodes that store and forward sealed dossiers they
    /// cannot read (region admins designate them)
    #[command(subcommand)]
    Relay(RelayCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum RelayCommand {
    /// List the designated dossier relays
    List,
    /// Designate a device as a dossier relay (region admins only)
    Designate {
        /// The device's node id (12D3KooW…) or the last 8+ characters of it
        id: String,
    },
    /// End a device's designation as a dossier relay (region admins only)
    Undesignate {
        /// The device's node id (12D3KooW…) or the last 8+ characters of it
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RegionCommand {
    /// Found a new region with this node's party as its first admin
    Create {
        /// The region's name, e.g. "Regio Utrecht-Midden"
        name: String,
    },
    /// Show the region: parties, devices, documents, control heads
    Show,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a staff account; prints a one-time password (to be changed at the first
    /// sign-in) unless --password-file gives one
    Add {
        /// The sign-in name, e.g. j.bakker (letters, digits, . _ - @)
        name: String,
        /// beheerder (accounts, invitations, devices), beleid (edits and approves
        /// plans), dossier (works with dossiers), lezer (reads plans)
        #[arg(long, value_parser = parse_staff_role)]
        role: regiosync_node::staff::StaffRole,
        /// Read the initial password from the first line of this file
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the staff accounts
    List,
    /// Set a new one-time password (or one from --password-file); ends the
    /// account's sessions; it must be changed at the next sign-in
    Passwd {
        /// The sign-in name
        name: String,
        /// Read the password from the first line of this file
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Disable an account: it cannot sign in, and its sessions end
    Disable {
        /// The sign-in name
        name: String,
    },
    /// Enable a disabled account again
    Enable {
        /// The sign-in name
        name: String,
    },
}

fn parse_staff_role(s: &str) -> Result<regiosync_node::staff::StaffRole, String> {
    s.parse()
        .map_err(|e: regiosync_node::staff::StaffError| e.to_string())
}

#[derive(Debug, Subcommand)]
pub(crate) enum PartyCommand {
    /// List the parties
    List,
    /// Give a party the name people read, e.g. "Gemeente Gouda" (the party's own
    /// devices, or a region admin)
    Name {
        /// The party, e.g. gemeente-gouda
        #[arg(value_parser = parse_party)]
        party: PartyName,
        /// Its display name (one line, at most 80 characters, unique in the region)
        display_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// List the devices
    List,
    /// Remove a device (lost laptop): it is cut off from the region
    Remove {
        /// The device's node id (12D3KooW…) or the last 8+ characters of it
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DossierCommand {
    /// Create a dossier for a student (owned by this node's party; the woongemeente
    /// is granted access)
    New {
        /// The municipality the student lives in (a party of the region)
        #[arg(long, value_parser = parse_party)]
        woongemeente: PartyName,
        /// Legal basis of the woongemeente's access: toestemming or wettelijke-taak
        #[arg(long, default_value = "wettelijke-taak", value_parser = parse_basis)]
        basis: Basis,
        /// Purpose of the woongemeente's access
        #[arg(long)]
        purpose: String,
        /// A field to set, e.g. --set naam="Sanne de Vries" (repeatable)
        #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_field_value)]
        set: Vec<(DossierField, String)>,
    },
    /// List the dossiers this node holds (ids only: names are sealed)
    List,
    /// Show a dossier (recorded in the audit log with the purpose)
    Show {
        /// Dossier id or an unambiguous prefix (8+ hex digits)
        id: String,
        /// Why you read it (purpose limitation; recorded in the audit log)
        #[arg(long)]
        purpose: String,
    },
    /// Set a field: naam, geboortedatum, woongemeente, opleiding, locatie,
    /// ondersteuningsbehoefte, zorg
    Edit {
        /// Dossier id or prefix
        id: String,
        /// The field
        #[arg(value_parser = parse_field)]
        field: DossierField,
        /// The new value
        value: String,
    },
    /// Add an entry to the contact log (dated today, by this node's party)
    Note {
        /// Dossier id or prefix
        id: String,
        /// What happened
        text: String,
    },
    /// Add a support agreement (ondersteuningsafspraak), with the date it is to be
    /// evaluated if there is one
    Agreement {
        /// Dossier id or prefix
        id: String,
        /// What is agreed, e.g. "Wekelijks gesprek met de mentor"
        text: String,
        /// When to evaluate it (YYYY-MM-DD)
        #[arg(long, value_parser = parse_date)]
        evaluate: Option<time::Date>,
    },
    /// Grant a party access (owner party only); its devices get every key
    Grant {
        /// Dossier id or prefix
        id: String,
        /// The party
        #[arg(long, value_parser = parse_party)]
        party: PartyName,
        /// Legal basis: toestemming or wettelijke-taak
        #[arg(long, value_parser = parse_basis)]
        basis: Basis,
        /// Purpose
        #[arg(long)]
        purpose: String,
        /// Last day of the grant (YYYY-MM-DD)
        #[arg(long, value_parser = parse_date)]
        until: Option<time::Date>,
    },
    /// Erase a dossier (owner party or a region admin): every key and every sealed
    /// change is destroyed, here and on every node that holds it; what stays is who
    /// erased it and when. Asks for confirmation on a terminal
    Erase {
        /// Dossier id or prefix
        id: String,
        /// Do not ask (for scripts; needed when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Revoke a party's access (owner party only); new writes get a key it lacks
    Revoke {
        /// Dossier id or prefix
        id: String,
        /// The party
        #[arg(long, value_parser = parse_party)]
        party: PartyName,
        /// Why (no personal data)
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DocCommand {
    /// Create a document
    #[command(subcommand)]
    New(NewDoc),
    /// List the documents on this node
    List,
    /// Show a document
    Show {
        /// Document id or an unambiguous prefix (8+ hex digits)
        id: String,
        /// Output format (--json implies json)
        #[arg(long, value_enum, default_value_t = ShowFormat::Md)]
        format: ShowFormat,
    },
    /// Edit sections
    #[command(subcommand)]
    Section(SectionCommand),
    /// Edit agreements (afspraken)
    #[command(subcommand)]
    Agreement(AgreementCommand),
    /// Comment on a passage of a section, list or resolve comments
    #[command(subcommand)]
    Comment(CommentCommand),
    /// List the versions of a document: when, which party, what changed
    #[command(alias = "log")]
    History {
        /// Document id or an unambiguous prefix
        id: String,
    },
    /// List fields that parties changed concurrently to different values; resolve
    /// one by writing the value you agree on (e.g. `doc agreement set … --status …`)
    Conflicts {
        /// Document id or an unambiguous prefix
        id: String,
    },
    /// Record that your party consents to the plan as it is now, signed by this device
    Approve {
        /// Document id or an unambiguous prefix
        id: String,
        /// A remark for the minutes (at most 500 characters)
        #[arg(long)]
        comment: Option<String>,
    },
    /// Show per party which version it approved and how many changes came after
    Approvals {
        /// Document id or an unambiguous prefix
        id: String,
    },
    /// Show what changed between two versions, per section, with who changed it
    Diff {
        /// Document id or an unambiguous prefix
        id: String,
        /// From: change hashes (comma-separated, 8+ hex digits each), approval:PARTY, or head
        #[arg(long)]
        from: String,
        /// To (default: the current version)
        #[arg(long)]
        to: Option<String>,
    },
    /// Export the current version: Markdown or HTML for the meeting, or the Automerge binary
    Export {
        /// Document id or an unambiguous prefix
        id: String,
        /// md, html or automerge
        #[arg(long, value_enum)]
        format: ExportKind,
        /// Write to this file instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show or change who may read and write a document
    Acl {
        /// Document id or an unambiguous prefix
        id: String,
        /// Set the readers: `all` (every party of the region, also the ones that
        /// join later) or exactly these parties, comma-separated (replaces the list;
        /// the owner and the writers always read)
        #[arg(long, value_name = "all|PARTY,…", value_parser = parse_audience)]
        readers: Option<Audience>,
        /// Set the writers: `all` or exactly these parties, comma-separated (replaces
        /// the list; the owner always writes)
        #[arg(long, value_name = "all|PARTY,…", value_parser = parse_audience)]
        writers: Option<Audience>,
        /// Add a reader (repeatable)
        #[arg(long, value_parser = parse_party)]
        add_reader: Vec<PartyName>,
        /// Add a writer (repeatable)
        #[arg(long, value_parser = parse_party)]
        add_writer: Vec<PartyName>,
        /// Remove a reader (repeatable)
        #[arg(long, value_parser = parse_party)]
        remove_reader: Vec<PartyName>,
        /// Remove a writer (repeatable)
        #[arg(long, value_parser = parse_party)]
        remove_writer: Vec<PartyName>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NewDoc {
    /// A regional plan
    Plan {
        /// Which kind of plan
        #[arg(long, value_parser = parse_kind)]
        kind: PlanKind,
        /// The plan's title
        #[arg(long)]
        title: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SectionCommand {
    /// Set a section's text (creates the section if no section has that id or title);
    /// the text comes from stdin or --file
    Set {
        /// Document id or an unambiguous prefix
        id: String,
        /// Section id (s-…) or title
        section: String,
        /// Read the text from this file instead of stdin
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Allow an empty text (empties the section); without it, empty input is
        /// refused, so that a forgotten pipe cannot wipe a section
        #[arg(long)]
        allow_empty: bool,
    },
    /// Delete a section (a signed change: `doc history` keeps it); comments on it
    /// stay, unanchored, and agreements no longer link it
    Delete {
        /// Document id or an unambiguous prefix
        id: String,
        /// Section id (s-…) or title
        section: String,
    },
    /// Move a section to another place in the plan (a signed change: `doc history`
    /// keeps it); its text, comments and links stay with it
    #[command(group(clap::ArgGroup::new("place").required(true).multiple(false)))]
    Move {
        /// Document id or an unambiguous prefix
        id: String,
        /// Section id (s-…) or title
        section: String,
        /// Put it just before this section (id or title)
        #[arg(long, value_name = "SECTION", group = "place")]
        before: Option<String>,
        /// Put it just after this section (id or title)
        #[arg(long, value_name = "SECTION", group = "place")]
        after: Option<String>,
        /// Make it the first section
        #[arg(long, group = "place")]
        first: bool,
        /// Make it the last section
        #[arg(long, group = "place")]
        last: bool,
    },
    /// Rename a section
    Rename {
        /// Document id or an unambiguous prefix
        id: String,
        /// Section id (s-…) or title
        section: String,
        /// The new title
        title: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CommentCommand {
    /// Comment on a passage: the comment stays on that text while the text around it changes
    Add {
        /// Document id or an unambiguous prefix
        id: String,
        /// Section id (s-…) or title
        #[arg(long)]
        section: String,
        /// The exact words the comment is about (must occur once in the section)
        #[arg(long)]
        quote: String,
        /// The comment
        #[arg(long)]
        text: String,
    },
    /// List the comments
    List {
        /// Document id or an unambiguous prefix
        id: String,
        /// Also list resolved comments
        #[arg(long)]
        all: bool,
    },
    /// Mark a comment resolved
    Resolve {
        /// Document id or an unambiguous prefix
        id: String,
        /// Comment id (c-…)
        comment: String,
        /// Open it again instead
        #[arg(long)]
        reopen: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgreementCommand {
    /// Remove an agreement (a signed change: `doc history` keeps it); to end one that
    /// was not carried out, set its status to vervallen instead
    Remove {
        /// Document id or an unambiguous prefix
        id: String,
        /// Agreement id (a-…)
        agreement: String,
    },
    /// Add an agreement with status open
    Add {
        /// Document id or an unambiguous prefix
        id: String,
        /// What is agreed
        #[arg(long)]
        title: String,
        /// The party that carries it out
        #[arg(long, value_parser = parse_party)]
        owner: PartyName,
        /// By when (YYYY-MM-DD)
        #[arg(long, value_parser = parse_date)]
        deadline: Option<time::Date>,
    },
    /// Change an agreement: fields, status, linked sections
    Set {
        /// Document id or an unambiguous prefix
        id: String,
        /// Agreement id (a-…)
        agreement: String,
        /// New title
        #[arg(long)]
        title: Option<String>,
        /// New description
        #[arg(long)]
        description: Option<String>,
        /// New owner party
        #[arg(long, value_parser = parse_party)]
        owner: Option<PartyName>,
        /// New deadline (YYYY-MM-DD), or `none`
        #[arg(long, value_parser = parse_opt_date)]
        deadline: Option<OptDate>,
        /// New status: open, in-uitvoering, afgerond, vervallen
        #[arg(long, value_parser = parse_status)]
        status: Option<AgreementStatus>,
        /// Funding note, or `none`
        #[arg(long)]
        funding: Option<String>,
        /// Link a section (id or title); repeat for more
        #[arg(long)]
        link: Vec<String>,
        /// Unlink a section (id or title); repeat for more
        #[arg(long)]
        unlink: Vec<String>,
    },
}

/// A deadline argument: a date or `none`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OptDate(pub(crate) Option<time::Date>);

fn parse_opt_date(s: &str) -> Result<OptDate, String> {
    if s.trim() == "none" {
        return Ok(OptDate(None));
    }
    parse_date(s).map(|d| OptDate(Some(d)))
}

fn parse_status(s: &str) -> Result<AgreementStatus, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "not an agreement status; the statuses are: {}",
            AgreementStatus::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Formats of `doc export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportKind {
    /// Markdown, with the approvals block
    Md,
    /// A standalone printable HTML page, with the approvals block
    Html,
    /// The Automerge binary, for any Automerge implementation
    Automerge,
}

/// Output formats of `doc show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ShowFormat {
    /// Markdown
    Md,
    /// JSON
    Json,
}

fn parse_party(s: &str) -> Result<PartyName, String> {
    PartyName::new(s).map_err(|e| e.to_string())
}

/// `all`, or a comma-separated list of parties (an empty list is allowed: only the
/// owner, and for readers the writers).
fn parse_audience(s: &str) -> Result<Audience, String> {
    if s.trim() == "all" {
        return Ok(Audience::Everyone);
    }
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_party)
        .collect::<Result<Vec<_>, _>>()
        .map(Audience::Parties)
}

fn parse_basis(s: &str) -> Result<Basis, String> {
    match s.trim() {
        "toestemming" => Ok(Basis::Toestemming),
        "wettelijke-taak" => Ok(Basis::WettelijkeTaak),
        _ => Err(format!(
            "'{s}' is not a legal basis: use toestemming or wettelijke-taak"
        )),
    }
}

fn parse_field(s: &str) -> Result<DossierField, String> {
    s.parse()
        .map_err(|e: regiosync_core::dossier::DossierError| e.to_string())
}

fn parse_field_value(s: &str) -> Result<(DossierField, String), String> {
    let (f, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not FIELD=VALUE"))?;
    Ok((parse_field(f)?, v.to_owned()))
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: regiosync_core::id::IdError| e.to_string())
}

fn parse_kind(s: &str) -> Result<PlanKind, String> {
    s.parse()
        .map_err(|e: regiosync_core::plan::PlanError| e.to_string())
}

/// Parses `30m`, `12h`, `7d` into seconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("'{s}' is not a duration: write e.g. 30m, 12h or 7d");
    let t = s.trim();
    let unit = t.chars().last().ok_or_else(bad)?;
    let n: i64 = t[..t.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let mult = match unit {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 || n > 365 {
        return Err(format!("'{s}' is out of range: use 1 to 365 units"));
    }
    Ok(n * mult)
}

fn parse_date(s: &str) -> Result<time::Date, String> {
    regiosync_core::plan::parse_date(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["regiosync", "doc", "list", "--json", "--data-dir", "/x"])
            .unwrap();
        assert!(cli.global.json);
        assert_eq!(
            cli.global.data_dir.as_deref(),
            Some(std::path::Path::new("/x"))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration(" 7d "), Ok(7 * 86_400));
        for bad in ["", "d", "7", "7w", "7é", "é", "-1d", "0h", "366d", "１d"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["regiosync", "init", "--party", "x y", "--role", "roc"][..],
            &["regiosync", "init", "--party", "roc-a", "--role", "school"],
            &[
                "regiosync",
                "doc",
                "new",
                "plan",
                "--kind",
                "begroting",
                "--title",
                "t",
            ],
            &[
                "regiosync",
                "doc",
                "agreement",
                "add",
                "abcdef12",
                "--title",
                "t",
                "--owner",
                "roc-a",
                "--deadline",
                "2027-02-30",
            ],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }
}
