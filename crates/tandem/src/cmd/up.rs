//! `tandem up`: run the local multi-region lab.

use std::path::PathBuf;
use std::process::ExitCode;

use tandem_lab::Lab;
use tokio_util::sync::CancellationToken;

/// Arguments of `tandem up`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Run the lab described by this file instead of the built-in two-region lab.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(up(a))
}

async fn up(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = match &a.config {
        Some(p) => tandem_config::load(p),
        None => tandem_config::builtin_lab(),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = CancellationToken::new();
    let mut reloads = crate::signals::install(token.clone())?;
    let lab = Lab::start(&cfg, token.clone()).await?;
    print_banner(&cfg, &lab).await;

    if let (Some(path), Some(dns)) = (a.config.clone(), lab.dns.clone()) {
        tokio::spawn(async move {
            while reloads.recv().await.is_some() {
                match tandem_config::load(&path) {
                    Ok(cfg) => {
                        if let Err(e) = dns.reload(&cfg) {
                            tracing::error!(error = %e, "reload refused; still serving the previous config");
                        }
                    }
                    Err(e) => {
                        tracing::error!("reload refused; still serving the previous config:\n{e}")
                    }
                }
            }
        });
    }
    token.cancelled().await;
    lab.closed().await;
    Ok(ExitCode::SUCCESS)
}

async fn print_banner(cfg: &tandem_config::Config, lab: &Lab) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nTandem lab is up: {} regions\n\n",
        cfg.regions.len()
    ));
    for d in &lab.dns_addrs {
        let zones: Vec<&str> = cfg
            .dns
            .iter()
            .flat_map(|d| d.zones.iter().map(|z| z.origin.as_str()))
            .collect();
        out.push_str(&format!(
            "  DNS traffic manager  {d} (udp+tcp)  zones: {}\n",
            zones.join(", ")
        ));
    }
    out.push_str(&format!(
        "  status page          http://{}/\n",
        lab.admin_addr
    ));
    out.push_str(&format!(
        "  metrics              http://{}/metrics\n",
        lab.admin_addr
    ));
    out.push_str(&format!(
        "  lab CA certificate   {}\n",
        lab.ca_cert.display()
    ));
    if let Some((user, password)) = &lab.registry_creds {
        out.push_str(&format!("  registry push       creds: {user}:{password}\n"));
    }
    for r in lab.regions().await {
        for (what, addr) in &r.serves {
            out.push_str(&format!("  {:<8} {:<11} {addr}\n", r.region, what));
        }
    }
    let dns = lab
        .dns_addrs
        .first()
        .map(|a| (a.ip().to_string(), a.port()));
    let first = cfg
        .regions
        .first()
        .map(|r| r.name.as_str())
        .unwrap_or("eastus");
    let name = cfg
        .dns
        .as_ref()
        .and_then(|d| d.profiles.iter().find_map(|p| p.domain.clone()))
        .unwrap_or_else(|| "app.tandem.test".into());
    out.push_str("\nTry:\n");
    let https_edge = lab
        .regions()
        .await
        .into_iter()
        .flat_map(|r| r.serves)
        .find_map(|(_, a)| {
            a.strip_prefix("https://")
                .map(|h| h.trim_end_matches('/').to_string())
        });
    if let Some(edge) = &https_edge
        && let Some((ip, port)) = edge.rsplit_once(':')
    {
        out.push_str(&format!(
            "  curl --cacert {} --resolve {name}:{port}:{ip} https://{name}:{port}/\n",
            lab.ca_cert.display()
        ));
    }
    if let Some((ip, port)) = dns {
        out.push_str(&format!(
            "  dig @{ip} -p {port} {name} +short        # the primary region answers\n"
        ));
        out.push_str(&format!(
            "  tandem lab fail {first}                     # stop every listener of {first}\n"
        ));
        out.push_str(&format!(
            "  dig @{ip} -p {port} {name} +short        # within a second: its pair answers\n"
        ));
        out.push_str(&format!("  tandem lab restore {first}\n"));
    }
    if let (Some((user, password)), Some((r0, u0)), Some((r1, u1))) = (
        &lab.registry_creds,
        lab.registry_urls.first(),
        lab.registry_urls.get(1),
    ) {
        let h0 = u0
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let h1 = u1
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        out.push_str(&format!(
            "  skopeo copy --dest-tls-verify=false --dest-creds {user}:{password} oci:DIR:v1 docker://{h0}/demo/app:v1   # push to {r0}\n"
        ));
        out.push_str(&format!(
            "  skopeo inspect --tls-verify=false docker://{h1}/demo/app:v1                # pull from {r1} (anonymous)\n"
        ));
    }
    out.push_str("  tandem status                              # regions, endpoints, health, traffic shares\n");
    out.push_str("\nCtrl-C stops the lab.\n");
    println!("{out}");
}
