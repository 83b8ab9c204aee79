//! A real client in a real browser: headless Chromium loads the digimon page from
//! http://web.backend.com (mapped to `kubectl mesh run`'s listener), and the page creates, feeds
//! and watches a digimon through gRPC-Web on http://api.backend.com. Chromium enforces CORS
//! (preflight, credentials, origin), so a config granting another origin must make the page
//! fail. Needs Chromium, node_modules, the page and the binaries (`make test-browser` does it).
//! Screenshots: target/browser/.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mesh_tests::app::{App, AppOptions, Binaries, ProcessGroup};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    mesh_tests::workspace_root()
}

/// Starts the app with `config` behind the mesh.
fn start(config: &Path) -> App {
    let bins = Binaries::in_dir(
        Path::new(env!("CARGO_BIN_EXE_digimon-demo"))
            .parent()
            .unwrap(),
    )
    .unwrap();
    let web_dir = root().join("target/digimon-web");
    assert!(
        web_dir.join("app.js").is_file(),
        "{} has no built page: run `make digimon-web`",
        web_dir.display()
    );
    let opts = AppOptions {
        config: config.to_owned(),
        web_dir,
        port: 0,
        step_ms: 300,
        echo: false,
    };
    App::start(&bins, &opts, ProcessGroup::default()).unwrap()
}

/// Runs the browser driver against `app` and returns what the page showed.
fn browse(app: &App, name: &str, screenshot: &str) -> Value {
    let web = root().join("examples/digimon/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "no node_modules in {}: run `make test-browser` (npm ci)",
        web.display()
    );
    let shot = root().join("target/browser").join(screenshot);
    let out = Command::new("node")
        .current_dir(&web)
        .arg("test/browser.mjs")
        .args([
            "--port",
            &app.port.to_string(),
            "--name",
            name,
            "--food",
            "meat",
        ])
        .arg("--screenshot")
        .arg(&shot)
        .output()
        .expect("node runs (npm and node are on the machine image)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser driver failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no JSON from the driver ({e}):\n{stdout}"));
    println!("page: {page:#}\nscreenshot: {}", shot.display());
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    page
}

fn text<'a>(page: &'a Value, key: &str) -> &'a str {
    page[key].as_str().unwrap_or("")
}

#[test]
fn the_page_creates_feeds_and_watches_a_digimon_through_grpc_web() {
    let app = start(&root().join("examples/digimon/mesh.yaml"));
    let page = browse(&app, "Tentomon", "digimon.png");
    let context = format!(
        "page: {page:#}\nmesh:\n{}\nserver:\n{}",
        app.mesh.text(),
        app.server.text()
    );
    assert_eq!(text(&page, "origin"), "http://web.backend.com", "{context}");
    assert_eq!(text(&page, "state"), "done", "{context}");
    assert!(
        text(&page, "created").starts_with("Created Tentomon (id d"),
        "{context}"
    );
    assert!(text(&page, "created").ends_with("fed meat"), "{context}");
    let updates: Vec<&str> = page["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(updates.len() >= 2, "at least two stream updates: {context}");
    assert!(
        updates.iter().all(|u| u.starts_with("Tentomon: ")),
        "{context}"
    );
    assert_ne!(updates[0], updates[1], "the updates change: {context}");
    assert_eq!(text(&page, "error"), "", "{context}");
    // The calls really reached the gRPC server, from the browser.
    let server = app.server.text();
    assert!(server.contains("Create name=Tentomon"), "{context}");
    assert!(server.contains("Foster id="), "{context}");
    assert!(server.contains("QueryStream id="), "{context}");
}

#[test]
fn the_page_fails_when_the_config_allows_another_origin() {
    let text_cfg = std::fs::read_to_string(root().join("examples/digimon/mesh.yaml")).unwrap();
    let changed = text_cfg.replace(
        "exact: http://web.backend.com",
        "exact: http://other.backend.com",
    );
    assert_ne!(
        changed, text_cfg,
        "the example config allows http://web.backend.com"
    );
    let dir = std::env::temp_dir().join(format!("digimon-browser-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mesh.yaml");
    std::fs::write(&config, changed).unwrap();

    let app = start(&config);
    let page = browse(&app, "Patamon", "digimon-wrong-origin.png");
    let context = format!("page: {page:#}\nserver:\n{}", app.server.text());
    // The page itself still loads (the web host has no CORS), but Chromium refuses the API's
    // preflight: the script sees a failed fetch and nothing reaches the gRPC server.
    assert_eq!(text(&page, "origin"), "http://web.backend.com", "{context}");
    assert_eq!(text(&page, "state"), "error", "{context}");
    assert_eq!(text(&page, "created"), "", "{context}");
    assert!(page["updates"].as_array().unwrap().is_empty(), "{context}");
    assert!(
        text(&page, "error").contains("Failed to fetch"),
        "the browser's CORS refusal: {context}"
    );
    assert!(
        page["console"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("CORS policy")),
        "Chromium reports the CORS refusal: {context}"
    );
    assert!(
        !app.server.text().contains("Create"),
        "no Create reached the server: {context}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
