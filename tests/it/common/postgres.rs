//! A PostgreSQL server on loopback for one test: Debian's `postgresql`
//! package (installed by scripts/setup.sh), a fresh cluster made with
//! `initdb` in a temporary directory, started with `pg_ctl` as a non-root
//! user (PostgreSQL refuses to run as root), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directory of PostgreSQL's programs: `PG_BIN`, else the newest of
/// Debian's `/usr/lib/postgresql/N/bin`.
fn pg_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PG_BIN") {
        return p.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/setup.sh")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no /usr/lib/postgresql/N/bin/pg_ctl")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program args` as the user PostgreSQL runs as (`nobody` when the tests
/// run as root, else this user).
fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

impl PgServer {
    pub fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["nobody:nogroup"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the PostgreSQL directory");
        }
        let bin = pg_bin();
        let data = dir.path().join("data");
        let out = as_pg_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "ferry", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = PgServer {
            port: super::free_port(),
            dir,
            running: false,
        };
        server.start_again();
        server
    }

    /// Starts the server (again, after [`PgServer::stop`]) on its port.
    pub fn start_again(&mut self) {
        let dir = self.dir.path();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            dir.display()
        );
        let status = as_pg_user(&pg_bin().join("pg_ctl"))
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pg_ctl start: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        self.running = true;
    }

    /// Stops the server at once (connections dropped, as in a crash).
    pub fn stop(&mut self) {
        let _ = as_pg_user(&pg_bin().join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }

    pub fn url(&self) -> String {
        format!("postgres://ferry@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            self.stop();
        }
    }
}
