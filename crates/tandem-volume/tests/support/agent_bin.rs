//! Test helper: `tandem-volume-test-agent <config.toml> <volume>` takes one snapshot of the
//! volume and prints the outcome as JSON. Tests kill it with SIGKILL mid-snapshot.

use std::sync::Arc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: tandem-volume-test-agent <config.toml> <volume>");
        return std::process::ExitCode::from(2);
    }
    let cfg = match tandem_config::load(std::path::Path::new(&args[1])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Some(vc) = cfg.volume else {
        eprintln!("no [volume] section");
        return std::process::ExitCode::from(2);
    };
    let Some(v) = vc.volume(&args[2]) else {
        eprintln!("no such volume");
        return std::process::ExitCode::from(2);
    };
    let spec = match tandem_volume::VolumeSpec::new(&vc, v, tandem_volume::Direction::Forward) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return std::process::ExitCode::from(2);
    };
    let result = rt.block_on(async {
        let s = spec.clone();
        let h = tokio::runtime::Handle::current();
        let repo =
            tokio::task::spawn_blocking(move || tandem_volume::Repo::open(&s, h, None, true))
                .await
                .map_err(|e| tandem_volume::VolumeError::Internal(e.to_string()))??;
        eprintln!("snapshot starting");
        tandem_volume::snapshot::snapshot_with_hooks(
            Arc::new(repo),
            spec,
            Default::default(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
    });
    match result {
        Ok(out) => {
            println!("{}", serde_json::to_string(&out).unwrap_or_default());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
