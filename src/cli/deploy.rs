//! `cortex deploy [CONFIG_FILE]`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::bundle::{self, Bundle};
use super::environment::{self, Target};
use super::failure::Refusal;
use super::output::{print_structured, OutputFormat};
use super::style::printable;
use super::{prompt, render, wait, DeployArgs, ExitStatus};
use crate::api::ApiKind;
use crate::api::{DeployAction, DeployRefusal, DeployRequest, DeployResult};

/// Bundles above this many bytes (compressed) or files ask before uploading.
const PROMPT_BYTES: u64 = 32 * 1024 * 1024;
const PROMPT_FILES: usize = 1000;
/// Bundles above this size are refused.
const LIMIT_BYTES: u64 = 512 * 1024 * 1024;

/// A size threshold, overridable through an environment variable (bytes).
fn threshold(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn run(args: DeployArgs) -> anyhow::Result<ExitStatus> {
    let config_path = &config_file(&args.config_file)?;
    let specs = crate::spec::parse_file(config_path)?;
    let config_text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let root = config_path
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", config_path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .context("the config file has no parent directory")?;
    refuse_dangerous_root(&root)?;

    let limit = threshold("CORTEX_UPLOAD_LIMIT_BYTES", LIMIT_BYTES);
    let packed = {
        let (root, cfg) = (root.clone(), config_path.clone());
        tokio::task::spawn_blocking(move || bundle::pack(&root, &cfg, limit)).await??
    };
    ask_before_large_uploads(&packed, &root, args.yes)?;

    let target = environment::connect(args.env.env.as_deref()).await?;
    upload(&target, &packed).await?;
    let before = match args.wait {
        true => wait::numbers_before(&target.client).await?,
        false => Default::default(),
    };
    let config_file = config_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cortex.yaml".to_string());
    let request = DeployRequest {
        config_file,
        config: config_text,
        bundle: packed.sha256.clone(),
        force: args.force,
    };
    let results = match target.client.deploy(&request).await {
        // The bundle went between the look and the deploy (the delete of the last API that
        // used it removed it): sent again, once.
        Err(e) if e.kind() == "not_found" => {
            put(&target, &packed).await?;
            target.client.deploy(&request).await?
        }
        answer => answer?,
    };
    let failed = results.iter().any(|r| r.action == DeployAction::Failed);
    let wait = args.wait && !failed;
    // Waiting with -o json|yaml, the documents at the end say what the deploy did and more.
    if args.output == OutputFormat::Pretty {
        print_pretty(&results, &target, specs.len());
    } else if failed {
        // Nothing was deployed: the error document, as for any command that failed.
        return Err(refused(&results).into());
    } else if !wait {
        print_structured(args.output, &results)?;
    }
    if wait {
        let awaited = wait::awaited(&results, &before);
        return wait::apis(
            &target,
            &awaited,
            args.timeout,
            args.output,
            wait::Shape::List,
        )
        .await;
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// The config file `given` names: the file, or a directory's `cortex.yaml`.
fn config_file(given: &Path) -> anyhow::Result<PathBuf> {
    if given.is_dir() {
        let inside = given.join("cortex.yaml");
        if !inside.is_file() {
            let why = format!(
                "{} is a directory and has no cortex.yaml; give the config file's path, e.g. `cortex deploy {}`",
                given.display(),
                given.join("<config file>.yaml").display()
            );
            return Err(Refusal::InvalidConfig(why).into());
        }
        return Ok(inside);
    }
    if !given.exists() {
        if given == Path::new("cortex.yaml") {
            return Err(Refusal::InvalidConfig(
                "no api config file was specified, and ./cortex.yaml does not exist; create cortex.yaml, or reference an existing config file by running `cortex deploy <config_file_path>`".into()
            ).into());
        }
        let missing = format!("{} does not exist", given.display());
        return Err(Refusal::InvalidConfig(missing).into());
    }
    Ok(given.to_path_buf())
}

fn refuse_dangerous_root(root: &Path) -> anyhow::Result<()> {
    if root == Path::new("/") {
        bail!("cannot deploy from your root directory; move cortex.yaml and your project into a directory of its own");
    }
    if dirs::home_dir()
        .and_then(|h| h.canonicalize().ok())
        .is_some_and(|h| h == root)
    {
        bail!("cannot deploy from your home directory; move cortex.yaml and your project into a directory of its own");
    }
    Ok(())
}

fn ask_before_large_uploads(b: &Bundle, root: &Path, yes: bool) -> anyhow::Result<()> {
    let prompt_bytes = threshold("CORTEX_UPLOAD_PROMPT_BYTES", PROMPT_BYTES);
    if !yes && (b.bytes.len() as u64 > prompt_bytes || b.files > PROMPT_FILES) {
        let question = format!(
            "cortex will upload {} files ({} compressed, {} on disk) from {}; continue?",
            b.files,
            render::bytes(b.bytes.len() as u64),
            render::bytes(b.raw_size),
            root.display()
        );
        let hint = "re-run with --yes to upload anyway, or list what to leave out in .cortexignore";
        if !prompt::confirm(&question, hint)? {
            bail!(
                "deploy cancelled; you can skip this prompt next time with `cortex deploy --yes`"
            );
        }
    }
    Ok(())
}

/// Uploads the bundle unless the server already has it, with a progress bar on a terminal.
/// Uploads the project's bundle unless the server has it.
async fn upload(target: &Target, b: &Bundle) -> anyhow::Result<()> {
    if target.client.has_bundle(&b.sha256).await? {
        return Ok(());
    }
    put(target, b).await
}

/// Uploads the project's bundle, with a progress bar on a terminal for a large one.
async fn put(target: &Target, b: &Bundle) -> anyhow::Result<()> {
    let total = b.bytes.len() as u64;
    let bar = (std::io::stderr().is_terminal() && total > 256 * 1024).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "uploading project {bar:30} {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.tick(); // draw at once, even if the upload is quick
        bar
    });
    let all = bytes::Bytes::from(b.bytes.clone());
    let chunks: Vec<bytes::Bytes> = (0..all.len())
        .step_by(64 * 1024)
        .map(|start| all.slice(start..(start + 64 * 1024).min(all.len())))
        .collect();
    let progress = bar.clone();
    let sent = move |n: u64| {
        if let Some(bar) = &progress {
            bar.inc(n);
        }
    };
    let result = target.client.put_bundle(&b.sha256, chunks, sent).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result?;
    Ok(())
}

/// A deploy the server refused (nothing of it was deployed): why, API by API; a conflict
/// when every API refused clashed with an update in progress, else the config's to fix.
fn refused(results: &[DeployResult]) -> Refusal {
    let why = results
        .iter()
        .filter(|r| r.action == DeployAction::Failed)
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut refusals = results.iter().filter_map(|r| r.refused).peekable();
    let conflict = refusals.peek().is_some() && refusals.all(|r| r == DeployRefusal::Conflict);
    match conflict {
        true => Refusal::Conflict(why),
        false => Refusal::InvalidConfig(why),
    }
}

fn print_pretty(results: &[DeployResult], target: &Target, api_count: usize) {
    let (ok, errors): (Vec<_>, Vec<_>) = results
        .iter()
        .partition(|r| r.action != DeployAction::Failed);
    for r in &ok {
        println!("{}", printable(&r.message));
        if let Some(endpoint) = &r.endpoint {
            println!("endpoint: {}", printable(endpoint));
        }
    }
    if !errors.is_empty() {
        if !ok.is_empty() {
            eprintln!();
        }
        for r in &errors {
            eprintln!("error: {}", printable(&r.message));
        }
    }
    if ok.is_empty() {
        return;
    }
    let env = target.env_suffix();
    let name = if api_count == 1 {
        ok[0].name.clone()
    } else {
        "<api_name>".to_string()
    };
    let mut hints = vec![
        (format!("cortex get{env}"), "(show api statuses)"),
        (format!("cortex get {name}{env}"), "(show api info)"),
    ];
    if ok.iter().any(|r| r.kind == ApiKind::RealtimeAPI) {
        hints.push((format!("cortex logs {name}{env}"), "(show api logs)"));
    }
    println!();
    let width = hints
        .iter()
        .map(|(c, _)| c.len())
        .max()
        .unwrap_or(0)
        .max(27);
    for (cmd, what) in hints {
        println!("{cmd:<width$} {what}");
    }
}
