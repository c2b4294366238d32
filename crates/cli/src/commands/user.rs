//! `regiosync user …`: the staff accounts of this node's web app.

use regiosync_core::identity::SecretString;
use regiosync_node::staff::{StaffAccount, generate_password};
use serde::Serialize;

use crate::cli::{GlobalArgs, UserCommand};
use crate::output::{Output, one_line};

#[derive(Serialize)]
struct Added<'a> {
    account: &'a StaffAccount,
    /// The one-time password, when this command chose it.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
}

/// The password from `--password-file`, or a generated one-time password (and
/// whether it was generated).
fn password(file: Option<&std::path::Path>) -> anyhow::Result<(SecretString, bool)> {
    Ok(match file {
        Some(f) => (super::read_passphrase(f)?, false),
        None => (generate_password()?, true),
    })
}

pub(crate) fn run(global: &GlobalArgs, out: Output, cmd: UserCommand) -> anyhow::Result<()> {
    use age::secrecy::ExposeSecret;
    let mut node = regiosync_node::Node::open(&super::data_dir(global)?)?;
    match cmd {
        UserCommand::Add {
            name,
            role,
            password_file,
        } => {
            let (pass, generated) = password(password_file.as_deref())?;
            let account = node.add_staff(&name, role, &pass, true)?;
            let shown = generated.then(|| pass.expose_secret());
            out.emit(
                &Added {
                    account: &account,
                    password: shown,
                },
                || {
                    let mut s = format!(
                        "Added staff account {} (role {}).\n",
                        one_line(&account.name),
                        account.role
                    );
                    if let Some(p) = shown {
                        s.push_str(&format!(
                            "One-time password: {p}\nGive it to the person on a confidential channel; they choose their own at the first sign-in.\n"
                        ));
                    } else {
                        s.push_str("The password from the file must be changed at the first sign-in.\n");
                    }
                    s
                },
            )
        }
        UserCommand::List => {
            let accounts = node.staff_accounts()?;
            out.emit(&accounts, || {
                if accounts.is_empty() {
                    return "No staff accounts: add one with `regiosync user add NAME --role ROLE`.\n".into();
                }
                let mut s = String::new();
                for a in &accounts {
                    let state = if a.disabled {
                        "disabled"
                    } else if a.must_change {
                        "must change password"
                    } else {
                        "active"
                    };
                    s.push_str(&format!(
                        "{:<24} {:<10} {state}\n",
                        one_line(&a.name),
                        a.role.as_str()
                    ));
                }
                s
            })
        }
        UserCommand::Passwd {
            name,
            password_file,
        } => {
            let (pass, generated) = password(password_file.as_deref())?;
            node.set_staff_password(&name, &pass, true)?;
            let shown = generated.then(|| pass.expose_secret());
            out.emit(
                &serde_json::json!({ "name": name, "password": shown, "sessions_ended": true }),
                || {
                    let mut s = format!(
                        "New password set for {}; its sessions ended.\n",
                        one_line(&name)
                    );
                    if let Some(p) = shown {
                        s.push_str(&format!("One-time password: {p}\n"));
                    }
                    s.push_str("It must be changed at the next sign-in.\n");
                    s
                },
            )
        }
        UserCommand::Disable { name } => {
            node.set_staff_disabled(&name, true)?;
            out.emit(
                &serde_json::json!({ "name": name, "disabled": true }),
                || format!("Disabled {}; its sessions ended.\n", one_line(&name)),
            )
        }
        UserCommand::Enable { name } => {
            node.set_staff_disabled(&name, false)?;
            out.emit(
                &serde_json::json!({ "name": name, "disabled": false }),
                || format!("Enabled {}.\n", one_line(&name)),
            )
        }
    }
}
