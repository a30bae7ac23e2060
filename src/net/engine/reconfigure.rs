//! Node-wide settings changed while running (`Command::Reconfigure`, sent
//! by `config::reload` on SIGHUP): the global rate limits and bootstrap
//! nodes to add.

use super::*;

impl Engine {
    pub(super) fn cmd_reconfigure(
        &mut self,
        download_limit: Option<u64>,
        upload_limit: Option<u64>,
        add_bootstrap: Vec<String>,
        now: Instant,
    ) {
        if let Some(rate) = download_limit {
            self.down_bucket.set_rate(rate);
            self.config.download_rate_limit = rate;
            log::info!("global download limit: {}", limit_text(rate));
        }
        if let Some(rate) = upload_limit {
            self.up_bucket.set_rate(rate);
            self.config.upload_rate_limit = rate;
            log::info!("global upload limit: {}", limit_text(rate));
        }
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        let mut names = false;
        for b in add_bootstrap {
            if self.config.overlay.bootstrap.contains(&b) {
                continue;
            }
            match b.parse::<SocketAddr>() {
                Ok(addr) => o.node.add_bootstrap(addr, now),
                Err(_) => names = true,
            }
            log::info!("bootstrap node added: {b}");
            self.config.overlay.bootstrap.push(b);
        }
        if names {
            // Resolves every name again, the new ones with them.
            self.resolve_bootstrap(now);
        }
    }
}

fn limit_text(rate: u64) -> String {
    if rate == 0 {
        "none".into()
    } else {
        format!("{rate} B/s")
    }
}
