//! The `config` target: the configuration loader ([`Config::load_text`]) with a file's text
//! and `RINGCAST_*` variables.
//!
//! An input is the file's text, then optionally a line `#--env--` followed by the variables,
//! one `NAME=value` a line (a line without `=` is a name with an empty value). The seeds are
//! `config/ringcast.toml` and variations of it.

use std::path::Path;

use ringcast::config::Config;

/// The line between the file's text and the variables.
pub const ENV_MARKER: &str = "\n#--env--\n";

/// Load one input; errors are fine, panics are not.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (file, vars) = text.split_once(ENV_MARKER).unwrap_or((&text, ""));
    let env: Vec<(String, String)> = vars
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    if let Ok(config) = Config::load_text(Path::new("/fuzz.toml"), file, env) {
        // What the binary derives from a loaded configuration must not panic either.
        let _ = config.shard_count();
        let _ = config.ice_servers();
    }
}
