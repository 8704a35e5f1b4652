//! Embeds hls.js (installed by `scripts/setup.sh` with npm into
//! `ui/node_modules`) into the binary for the web UI's live preview. Without it
//! the UI still works and says why the preview cannot play.

use std::path::Path;

fn main() {
    let src = Path::new("ui/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("hls.min.js");
    let body = std::fs::read(src)
        .unwrap_or_else(|_| b"/* hls.js not installed: run scripts/setup.sh */".to_vec());
    std::fs::write(out, body).expect("OUT_DIR is writable");
}
