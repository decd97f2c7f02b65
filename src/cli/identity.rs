//! `cortex users`, `cortex teams`, `cortex tokens` and `cortex access`: who may use a server
//! and its apis (for the operator of a remote server; the local server's admin needs none).

use clap::{Args, Subcommand};

use super::environment;
use super::output::{print_structured, OutputFormat};
use super::{render, EnvFlag, ExitStatus};
use crate::api::{CreateTeam, CreateToken, CreateUser, SetAccess, SetMember};
use crate::clock::now;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// create a user and print their first token
    Create {
        username: String,
        /// a global admin may do everything
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        common: Common,
    },
    /// list the users (admins only)
    List {
        #[command(flatten)]
        common: Common,
    },
    /// delete a user; their apis become yours
    Delete {
        username: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// create a team (admins only)
    Create {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// list the teams you can see, with their members
    List {
        #[command(flatten)]
        common: Common,
    },
    /// delete a team; its protected apis become private
    Delete {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// add a user to a team (or change whether they are its admin)
    Add {
        team: String,
        username: String,
        /// a team admin manages the team and owns its protected apis
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        common: Common,
    },
    /// remove a user from a team
    Remove {
        team: String,
        username: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// create a token (printed once; only its hash is stored)
    Create {
        /// a name to recognise it by in `cortex tokens list`
        #[arg(long)]
        name: Option<String>,
        /// when it expires, e.g. 1h or 720h (default: never)
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// the user it is for (admins only; default: you)
        #[arg(long)]
        user: Option<String>,
        /// scope it to one api: it works on that api alone
        #[arg(long, value_name = "API")]
        api: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// list your tokens (an admin sees everyone's)
    List {
        #[command(flatten)]
        common: Common,
    },
    /// revoke a token by the id `cortex tokens list` shows
    Revoke {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// the api
    pub api: String,
    /// who besides its owner may use it: private, protected (a team) or public (everyone)
    #[arg(long, value_parser = ["private", "protected", "public"])]
    pub access: Option<String>,
    /// the team of a protected api
    #[arg(long)]
    pub team: Option<String>,
    /// what the team (protected) or everyone (public) may do
    #[arg(long, value_parser = ["read", "write"])]
    pub permission: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

impl UsersCommand {
    /// The `-o` it was given.
    pub fn output(&self) -> OutputFormat {
        match self {
            Self::Create { common, .. } | Self::List { common } | Self::Delete { common, .. } => {
                common.output
            }
        }
    }
}

impl TeamsCommand {
    /// The `-o` it was given.
    pub fn output(&self) -> OutputFormat {
        match self {
            Self::Create { common, .. }
            | Self::List { common }
            | Self::Delete { common, .. }
            | Self::Add { common, .. }
            | Self::Remove { common, .. } => common.output,
        }
    }
}

impl TokensCommand {
    /// The `-o` it was given.
    pub fn output(&self) -> OutputFormat {
        match self {
            Self::Create { common, .. } | Self::List { common } | Self::Revoke { common, .. } => {
                common.output
            }
        }
    }
}

/// `-e ENV` and `-o FORMAT`, on every identity command.
#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub env: EnvFlag,
    /// output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

async fn client(common: &Common) -> anyhow::Result<crate::client::Client> {
    Ok(environment::connect(common.env.env.as_deref())
        .await?
        .client)
}

/// Prints `value` as `-o` asks, or `text` for people.
fn show<T: serde::Serialize>(
    common: &Common,
    value: &T,
    text: String,
) -> anyhow::Result<ExitStatus> {
    if !print_structured(common.output, value)? {
        print!("{}", super::style::printable(&text));
    }
    Ok(ExitStatus::Success)
}

/// Prints a plain acknowledgement: its message, or all of it as `-o` asks.
fn show_message(common: &Common, resp: &crate::api::MessageResponse) -> anyhow::Result<ExitStatus> {
    show(common, resp, format!("{}\n", resp.message))
}

/// `name`, or `name (admin)` for a team admin.
fn marked_admin(name: &str, team_admin: bool) -> String {
    if team_admin {
        format!("{name} (admin)")
    } else {
        name.to_string()
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "-" }.to_string()
}

pub async fn users(cmd: UsersCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        UsersCommand::Create {
            username,
            admin,
            common,
        } => {
            let created = client(&common)
                .await?
                .create_user(&CreateUser { username, admin })
                .await?;
            let text = format!(
                "created user {}{}\ntheir token (shown once): {}\n",
                created.user.username,
                if created.user.admin { " (admin)" } else { "" },
                created.token
            );
            show(&common, &created, text)
        }
        UsersCommand::List { common } => {
            let users = client(&common).await?.list_users().await?;
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    let teams: Vec<String> = u
                        .teams
                        .iter()
                        .map(|m| marked_admin(&m.team, m.team_admin))
                        .collect();
                    vec![u.username.clone(), yes_no(u.admin), teams.join(", ")]
                })
                .collect();
            let text = format!("{}\n", render::table(&["user", "admin", "teams"], &rows));
            show(&common, &users, text)
        }
        UsersCommand::Delete { username, common } => {
            let resp = client(&common).await?.delete_user(&username).await?;
            show_message(&common, &resp)
        }
    }
}

pub async fn teams(cmd: TeamsCommand) -> anyhow::Result<ExitStatus> {
    let team_text = |t: &crate::api::TeamInfo| {
        let members: Vec<String> = t
            .members
            .iter()
            .map(|m| marked_admin(&m.username, m.team_admin))
            .collect();
        format!("team {}: {}\n", t.name, members.join(", "))
    };
    match cmd {
        TeamsCommand::Create { name, common } => {
            let team = client(&common)
                .await?
                .create_team(&CreateTeam { name })
                .await?;
            let text = format!("created team {}\n", team.name);
            show(&common, &team, text)
        }
        TeamsCommand::List { common } => {
            let teams = client(&common).await?.list_teams().await?;
            let rows: Vec<Vec<String>> = teams
                .iter()
                .map(|t| {
                    let members: Vec<&str> =
                        t.members.iter().map(|m| m.username.as_str()).collect();
                    let admins: Vec<&str> = t
                        .members
                        .iter()
                        .filter(|m| m.team_admin)
                        .map(|m| m.username.as_str())
                        .collect();
                    vec![t.name.clone(), members.join(", "), admins.join(", ")]
                })
                .collect();
            let text = if teams.is_empty() {
                "no teams\n".to_string()
            } else {
                format!("{}\n", render::table(&["team", "members", "admins"], &rows))
            };
            show(&common, &teams, text)
        }
        TeamsCommand::Delete { name, common } => {
            let resp = client(&common).await?.delete_team(&name).await?;
            show_message(&common, &resp)
        }
        TeamsCommand::Add {
            team,
            username,
            admin,
            common,
        } => {
            let info = client(&common)
                .await?
                .set_member(&team, &username, &SetMember { team_admin: admin })
                .await?;
            let text = team_text(&info);
            show(&common, &info, text)
        }
        TeamsCommand::Remove {
            team,
            username,
            common,
        } => {
            let info = client(&common)
                .await?
                .remove_member(&team, &username)
                .await?;
            let text = team_text(&info);
            show(&common, &info, text)
        }
    }
}

pub async fn tokens(cmd: TokensCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        TokensCommand::Create {
            name,
            expires_in,
            user,
            api,
            common,
        } => {
            let expires_in_secs = match expires_in {
                Some(text) => Some(
                    text.parse::<crate::spec::Duration>()
                        .map_err(|e| anyhow::anyhow!("--expires-in {text:?}: {e}"))?
                        .0,
                ),
                None => None,
            };
            let created = client(&common)
                .await?
                .create_token(&CreateToken {
                    name,
                    expires_in_secs,
                    username: user,
                    api,
                })
                .await?;
            let expiry = created
                .expires_at
                .map(|t| format!(" (expires in {})", render::age(now(), t)))
                .unwrap_or_default();
            let text = format!(
                "token {}{expiry} (shown once; only its hash is stored):\n{}\n",
                created.id, created.token
            );
            show(&common, &created, text)
        }
        TokensCommand::List { common } => {
            let tokens = client(&common).await?.list_tokens().await?;
            let t = now();
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.username.clone(),
                        k.name.clone(),
                        k.api.clone().unwrap_or_else(|| "-".into()),
                        k.expires_at
                            .map(|e| {
                                if e <= t {
                                    "expired".to_string()
                                } else {
                                    format!("in {}", render::age(t, e))
                                }
                            })
                            .unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            let text = format!(
                "{}\n",
                render::table(&["id", "user", "name", "api", "expires"], &rows)
            );
            show(&common, &tokens, text)
        }
        TokensCommand::Revoke { id, common } => {
            let resp = client(&common).await?.revoke_token(&id).await?;
            show_message(&common, &resp)
        }
    }
}

pub async fn access(args: AccessArgs) -> anyhow::Result<ExitStatus> {
    let info = client(&args.common)
        .await?
        .set_access(
            &args.api,
            &SetAccess {
                access: args.access,
                team: args.team,
                default_permission: args.permission,
            },
        )
        .await?;
    let team = info
        .team
        .as_ref()
        .map(|t| format!(" (team {t})"))
        .unwrap_or_default();
    let text = format!(
        "{}: {}{team}, default permission {}; owner {}\n",
        info.api, info.access, info.default_permission, info.owner
    );
    show(&args.common, &info, text)
}
