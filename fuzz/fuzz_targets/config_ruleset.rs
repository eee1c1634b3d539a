//! Config text → validated config → kernel ruleset → netlink batch: the
//! path `sesamed --check-config`, the start and every reload take. No
//! input may panic anywhere along it (a TOTP range of every port once made
//! the encoder abort), and whatever the parser accepts must encode.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = sesame::config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let rules = sesame::daemon::checks::ruleset(&cfg);
    if let Err(e) = sesame_nftables::encode_install(&cfg.daemon.table, &rules) {
        panic!("a config the parser accepted does not encode: {e}");
    }
});
