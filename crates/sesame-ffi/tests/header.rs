//! `include/sesame.h` is what cbindgen makes of `src/lib.rs` today: an
//! out-of-date header would let C callers compile against a signature that
//! no longer exists. `SESAME_BLESS=1 cargo test -p sesame-ffi --test
//! header` rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_makes() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let mut made = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut made);
    let made = String::from_utf8(made).expect("UTF-8 header");
    let path = crate_dir.join("include/sesame.h");
    if std::env::var("SESAME_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &made).expect("write the header");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == made,
        "{} is out of date: run SESAME_BLESS=1 cargo test -p sesame-ffi --test header\n--- made:\n{made}",
        path.display()
    );
}
