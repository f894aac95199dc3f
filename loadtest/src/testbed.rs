//! A server "on another host" on this one: a network namespace joined to the root namespace by
//! a veth pair, and Janus's configuration for it.
//!
//! Janus never offers a loopback candidate, so a load test of it needs the server behind a real
//! interface; the benchmark runs every server the same way so that all take the same kernel
//! path. The layout ([`Testbed::create`]):
//!
//! ```text
//!  root namespace (load generator)                 namespace rcb-<id> (server)
//!  veth rcbr<id> 10.213.<o>.1/24  <── veth pair ──> veth rcbs<id> 10.213.<o>.2/24
//!  local route 10.214.<k>.0/20 dev lo               route 10.214.<k>.0/20 via 10.213.<o>.1
//! ```
//!
//! The generator's sessions take their source addresses from the /20 (`--source-range`),
//! local in the root namespace and routed back to it from the server's namespace. `<o>` and
//! `<k>` are the first ones no other interface or local route uses, so test beds of concurrent
//! runs do not collide. Needs root and iproute2; everything is removed on drop.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A network namespace for the server, joined to the root namespace by a veth pair.
#[derive(Debug)]
pub struct Testbed {
    /// The namespace's name.
    pub namespace: String,
    /// The server's address, on `server_interface` in the namespace.
    pub server_ip: Ipv4Addr,
    /// The root namespace's end of the pair.
    pub client_ip: Ipv4Addr,
    /// The veth inside the namespace (Janus's `ice_enforce_list`).
    pub server_interface: String,
    /// Source addresses for the load generator's sessions (`--source-range`).
    pub source_range: (Ipv4Addr, u8),
    route_added: bool,
}

impl Testbed {
    /// Make the namespace, the veth pair, the addresses and routes. `tag` (a few letters and
    /// digits) makes the names unique to this run.
    pub fn create(tag: &str) -> Result<Testbed, String> {
        let id: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(9)
            .collect();
        let used = run_ip(&["-o", "-4", "addr", "show"])?;
        let octet = (20..=250u8)
            .find(|o| !used.contains(&format!("10.213.{o}.")))
            .ok_or("no free 10.213.x.0/24 for the veth pair")?;
        let local = run_ip(&["route", "show", "table", "local"])?;
        let block = (0..16u8)
            .map(|k| k * 16)
            .find(|b| !local.contains(&format!("10.214.{b}.")))
            .ok_or("no free 10.214.x.0/20 for the session addresses")?;
        let mut bed = Testbed {
            namespace: format!("rcb-{id}"),
            server_ip: Ipv4Addr::new(10, 213, octet, 2),
            client_ip: Ipv4Addr::new(10, 213, octet, 1),
            server_interface: format!("rcbs{id}"),
            source_range: (Ipv4Addr::new(10, 214, block, 0), 20),
            route_added: false,
        };
        let root_interface = format!("rcbr{id}");
        let (ns, inside) = (bed.namespace.clone(), bed.server_interface.clone());
        let range = bed.source_range_arg();
        let (server, client) = (bed.server_ip.to_string(), bed.client_ip.to_string());
        run_ip(&["netns", "add", &ns])?;
        run_ip(&[
            "link",
            "add",
            &root_interface,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
        ])?;
        run_ip(&["link", "set", &inside, "netns", &ns])?;
        run_ip(&[
            "addr",
            "add",
            &format!("{client}/24"),
            "dev",
            &root_interface,
        ])?;
        run_ip(&["link", "set", &root_interface, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend_from_slice(args);
            run_ip(&all)
        };
        in_ns(&["addr", "add", &format!("{server}/24"), "dev", &inside])?;
        in_ns(&["link", "set", &inside, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        in_ns(&["route", "add", &range, "via", &client])?;
        run_ip(&["route", "add", "local", &range, "dev", "lo"])?;
        bed.route_added = true;
        Ok(bed)
    }

    /// `--source-range` for the load generator, e.g. `10.214.16.0/20`.
    pub fn source_range_arg(&self) -> String {
        format!("{}/{}", self.source_range.0, self.source_range.1)
    }

    /// `program` to be run inside the namespace (`ip netns exec`, which execs it: the child's
    /// pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.route_added {
            let range = self.source_range_arg();
            let _ = run_ip(&["route", "del", "local", &range, "dev", "lo"]);
        }
        // Deleting the namespace deletes its veth, and so the pair.
        let _ = run_ip(&["netns", "del", &self.namespace]);
    }
}

/// Run `ip` with `args`; its stdout, or why it failed.
fn run_ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        format!("cannot run `ip` ({e}): install iproute2 (`apt-get install -y iproute2`)")
    })?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {} (network namespaces need root)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How Janus is set up for a load test.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    /// Address of the HTTP API (the namespace's address).
    pub ip: Ipv4Addr,
    /// HTTP API port (Janus's default: 8088).
    pub http_port: u16,
    /// The only interface Janus gathers ICE candidates on (`ice_enforce_list`).
    pub interface: String,
    /// Janus's `event_loops`: a fixed pool of media loop threads shared by all handles,
    /// instead of one thread per handle. One per core of the machine: the most threads that
    /// can run at once, so hundreds of handles cost no thread switching beyond that; fewer
    /// would cap Janus below the cores ringcast may use.
    pub event_loops: usize,
    /// 0 (nothing) ..= 7; 3 = warnings and errors only, so logging costs nothing under load.
    pub debug_level: u8,
}

impl JanusConfig {
    /// The settings the benchmark and the tests use on `bed`.
    pub fn for_testbed(bed: &Testbed) -> Self {
        JanusConfig {
            ip: bed.server_ip,
            http_port: 8088,
            interface: bed.server_interface.clone(),
            event_loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            debug_level: 3,
        }
    }

    /// The HTTP API's URL, for `--url`.
    pub fn url(&self) -> String {
        format!("http://{}:{}/janus", self.ip, self.http_port)
    }

    /// Write `janus.jcfg`, `janus.plugin.videoroom.jcfg` and `janus.transport.http.jcfg` into
    /// `dir`; returns the path of `janus.jcfg`. Only the videoroom plugin and the HTTP
    /// transport load; no STUN, no event handlers, no loggers.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, String> {
        let lib = janus_library_dir()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok::<_, String>(path)
        };
        let disable = |folder: &str, keep: &str| -> String {
            let mut names: Vec<String> = std::fs::read_dir(lib.join(folder))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".so") && n != keep)
                .collect();
            names.sort();
            names.join(",")
        };
        let mut main = String::new();
        let _ = write!(
            main,
            "# Written by ringcast-loadtest's test bed: Janus with only the HTTP transport and the\n\
             # VideoRoom plugin, ICE on one interface, no STUN, quiet logs.\n\
             # event_loops = {loops}: one media loop thread per core, shared by all handles (the\n\
             # default is a thread per handle); see JanusConfig::event_loops.\n\
             general: {{\n\
             \tconfigs_folder = \"{dir}\"\n\
             \tplugins_folder = \"{lib}/plugins\"\n\
             \ttransports_folder = \"{lib}/transports\"\n\
             \tevents_folder = \"{lib}/events\"\n\
             \tloggers_folder = \"{lib}/loggers\"\n\
             \tdebug_level = {level}\n\
             \tsession_timeout = 60\n\
             \tevent_loops = {loops}\n\
             }}\n\
             certificates: {{\n}}\n\
             media: {{\n\
             \trtp_port_range = \"20000-40000\"\n\
             }}\n\
             nat: {{\n\
             \tnice_debug = false\n\
             \tignore_mdns = true\n\
             \tice_enforce_list = \"{iface}\"\n\
             }}\n\
             plugins: {{\n\tdisable = \"{plugins}\"\n}}\n\
             transports: {{\n\tdisable = \"{transports}\"\n}}\n\
             loggers: {{\n\tdisable = \"{loggers}\"\n}}\n\
             events: {{\n\tbroadcast = false\n\tdisable = \"{events}\"\n}}\n",
            dir = dir.display(),
            lib = lib.display(),
            level = self.debug_level.min(7),
            loops = self.event_loops.max(1),
            iface = self.interface,
            plugins = disable("plugins", "libjanus_videoroom.so"),
            transports = disable("transports", "libjanus_http.so"),
            loggers = disable("loggers", ""),
            events = disable("events", ""),
        );
        let path = write("janus.jcfg", main)?;
        write(
            "janus.plugin.videoroom.jcfg",
            "# No predefined rooms: the load generator creates one per stream.\n\
             general: {\n\tevents = false\n}\n"
                .to_string(),
        )?;
        write(
            "janus.transport.http.jcfg",
            format!(
                "general: {{\n\
                 \tevents = false\n\
                 \tjson = \"plain\"\n\
                 \tbase_path = \"/janus\"\n\
                 \thttp = true\n\
                 \tport = {port}\n\
                 \tip = \"{ip}\"\n\
                 \thttps = false\n\
                 }}\n\
                 admin: {{\n\tadmin_http = false\n\tadmin_https = false\n}}\n\
                 cors: {{\n}}\n",
                port = self.http_port,
                ip = self.ip,
            ),
        )?;
        Ok(path)
    }
}

/// The `janus` binary, or why there is none (naming the Debian package).
pub fn janus_binary() -> Result<PathBuf, String> {
    [
        "/usr/bin/janus",
        "/usr/local/bin/janus",
        "/opt/janus/bin/janus",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .ok_or_else(|| {
        "the janus binary is missing: install the Debian package `janus` \
             (`apt-get install -y janus`; scripts/test does)"
            .to_string()
    })
}

/// Where Janus's plugins, transports, events and loggers folders are.
pub fn janus_library_dir() -> Result<PathBuf, String> {
    let mut candidates = vec![
        PathBuf::from("/usr/lib/janus"),
        PathBuf::from("/opt/janus/lib/janus"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        candidates.extend(entries.flatten().map(|e| e.path().join("janus")));
    }
    candidates
        .into_iter()
        .find(|d| d.join("plugins/libjanus_videoroom.so").exists())
        .ok_or_else(|| {
            "Janus's VideoRoom plugin (libjanus_videoroom.so) is missing: install the Debian \
             package `janus`"
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_config_loads_only_what_it_needs() {
        let Ok(_) = janus_library_dir() else {
            return; // covered by the janus integration test, which requires the package
        };
        let dir = std::env::temp_dir().join(format!("rcb-cfg-{}", std::process::id()));
        let config = JanusConfig {
            ip: Ipv4Addr::new(10, 213, 9, 2),
            http_port: 8088,
            interface: "rcbs9".into(),
            event_loops: 2,
            debug_level: 3,
        };
        let main = std::fs::read_to_string(config.write(&dir).unwrap()).unwrap();
        assert!(main.contains("event_loops = 2"));
        assert!(main.contains("ice_enforce_list = \"rcbs9\""));
        assert!(!main.contains("stun_server"));
        let plugins = main
            .lines()
            .find(|l| l.contains("libjanus_audiobridge"))
            .unwrap();
        assert!(!plugins.contains("libjanus_videoroom.so"));
        let http = std::fs::read_to_string(dir.join("janus.transport.http.jcfg")).unwrap();
        assert!(http.contains("ip = \"10.213.9.2\"") && http.contains("port = 8088"));
        assert_eq!(config.url(), "http://10.213.9.2:8088/janus");
        let _ = std::fs::remove_dir_all(dir);
    }
}
