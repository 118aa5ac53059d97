//! `plimsoll import artillery FILE.yml`: another tool's script as a configuration on stdout.

use super::{stdout, Exit};

/// Converts an Artillery script: the configuration on stdout, what was not converted on
/// stderr; 0 once converted (even with omissions), 3 for a file that is not a script.
pub fn import_artillery(file: &std::path::Path) -> Exit {
    // A script is read up to the size a configuration may have: `/dev/zero` is refused.
    let converted = crate::config::read_bounded(file, crate::config::MAX_CONFIG_BYTES)
        .map_err(|e| crate::import::ImportError::Read {
            path: file.display().to_string(),
            source: match e {
                crate::config::ReadError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            },
        })
        .and_then(|text| {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "artillery".into());
            crate::import::artillery::convert(&text, &name)
        });
    match converted {
        Ok(c) => {
            if !c.dropped.is_empty() {
                eprintln!(
                    "plimsoll import artillery: {} item(s) not converted or changed:",
                    c.dropped.len()
                );
                for d in &c.dropped {
                    eprintln!("  {d}");
                }
            }
            stdout(&c.toml);
            Exit::Success
        }
        Err(e) => {
            eprintln!("plimsoll import artillery: {}: {e}", file.display());
            Exit::Usage
        }
    }
}
