//! FsStore on a real filesystem (a temporary directory), through the store contract and over
//! real HTTP.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::SessionId;
use cloakroom::store::{OwnerIndex, Record, SessionStore, StoreError};
use cloakroom_fs::{FsStore, FsStoreError};
use cloakroom_testkit::Conformance;
use cloakroom_tests::app::{NAME, cookie, id_from, layer, serve, write_concurrently};
use cloakroom_tests::set;

/// A private temporary directory (0700, as the store requires of an existing one).
fn dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::Permissions::from_mode(0o700);
    tempfile::Builder::new()
        .permissions(private)
        .tempdir()
        .expect("a temporary directory")
}

fn store(dir: &std::path::Path) -> FsStore {
    FsStore::new(dir).expect("the store")
}

fn session_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_store_keeps_every_promise() {
    let dir = dir();
    let result = Conformance::new()
        .tick(Duration::from_millis(100))
        .sessions(2_000)
        .large_value(1024 * 1024)
        .run(store(dir.path()))
        .await;
    assert_eq!(result, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_store_keeps_the_owner_index_promises() {
    let dir = dir();
    let result = Conformance::new()
        .tick(Duration::from_millis(100))
        .sessions(2_000)
        .run_owner_index(store(dir.path()))
        .await;
    assert_eq!(result, Ok(()));
}

/// Thousands of an owner's sessions expire: the sweep takes their entries out with them,
/// and the owner's directory once it is empty; a logout takes its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_index_does_not_keep_ended_sessions() {
    let dir = dir();
    let store = store(dir.path());
    let owned = |idle| cloakroom_tests::owned("user:1", idle);
    for _ in 0..2_000 {
        store
            .create(&owned(Duration::from_millis(50)))
            .await
            .expect("create");
    }
    let owners = dir.path().join(".owners");
    let entries = || -> usize {
        std::fs::read_dir(&owners)
            .expect(".owners")
            .filter_map(Result::ok)
            .map(|owner| std::fs::read_dir(owner.path()).map_or(0, Iterator::count))
            .sum()
    };
    assert_eq!(entries(), 2_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.sweep().expect("sweep"), 2_000);
    assert_eq!(entries(), 0, "the sweep left index entries");
    assert_eq!(std::fs::read_dir(&owners).expect(".owners").count(), 0);

    let first = store
        .create(&owned(Duration::from_secs(60)))
        .await
        .expect("create");
    store
        .create(&owned(Duration::from_secs(60)))
        .await
        .expect("create");
    store.delete(&first).await.expect("delete");
    assert_eq!(entries(), 1, "a logout left its entry");
}

#[tokio::test]
async fn sessions_survive_a_restart_of_the_app() {
    let dir = dir();
    let cookie_value = {
        let server = serve(layer(cookie(), store(dir.path()))).await;
        let browser = server.browser();
        browser.get("/count").await;
        browser.get("/count").await;
        browser.cookie(NAME).unwrap_or_default()
    };
    let restarted = serve(layer(cookie(), store(dir.path()))).await;
    let browser = restarted.browser();
    browser.set_cookie(NAME, &cookie_value);
    assert_eq!(browser.get("/count").await.body, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_the_directory_lose_no_update() {
    let dir = dir();
    let first = serve(layer(cookie(), store(dir.path()))).await;
    let second = serve(layer(cookie(), store(dir.path()))).await;
    let browser = first.browser();
    browser.get("/count").await;
    let session = browser.cookie(NAME).unwrap_or_default();
    let other = second.browser();
    other.set_cookie(NAME, &session);
    let keys = write_concurrently(&[browser, other], 100).await;
    assert_eq!(keys.split(',').count(), 101, "updates were lost: {keys}");
}

#[tokio::test]
async fn crafted_ids_never_touch_paths_outside_the_directory() {
    let parent = dir();
    let sessions = parent.path().join("sessions");
    let server = serve(layer(cookie(), store(&sessions))).await;
    let long = "A".repeat(5000);
    for crafted in [
        "../escape.x",
        "..%2F..%2Fetc%2Fpasswd.x",
        "/etc/passwd.x",
        "/tmp/x.sig",
        "%00.x",
        long.as_str(),
        "ééééééééééééééééééééééééééééééé.x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/A.x",
    ] {
        let browser = server.browser();
        browser.set_cookie(NAME, crafted);
        let response = browser.post_form("/set/k/v", "").await;
        assert_eq!(response.status, StatusCode::OK, "{crafted}");
    }
    let outside: Vec<String> = std::fs::read_dir(parent.path())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        outside,
        ["sessions"],
        "files appeared outside the store directory"
    );
    for entry in std::fs::read_dir(&sessions)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name.strip_suffix(".json");
        assert!(
            name == ".locks" || name == ".owners" || id.and_then(SessionId::parse).is_some(),
            "unexpected file {name:?}"
        );
    }
}

#[tokio::test]
async fn expired_sessions_are_swept_in_the_background() {
    let dir = dir();
    let store = FsStore::builder(dir.path())
        .sweep_interval(Duration::from_millis(100))
        .build()
        .expect("the store");
    let short = Record::new(std::time::SystemTime::now(), Duration::from_secs(3), None);
    let long = Record::new(std::time::SystemTime::now(), Duration::from_secs(600), None);
    for _ in 0..50 {
        store.create(&short).await.expect("create");
    }
    let keep = store.create(&long).await.expect("create");
    assert_eq!(session_files(dir.path()), 51, "live sessions were swept");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while session_files(dir.path()) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        session_files(dir.path()),
        1,
        "expired session files were not swept"
    );
    assert!(matches!(store.load(&keep).await, Ok(Some(_))));
}

#[tokio::test]
async fn a_corrupt_file_is_an_error_naming_it_and_a_500() {
    let dir = dir();
    let store = store(dir.path());
    let server = serve(layer(cookie(), store.clone())).await;
    let browser = server.browser();
    browser.get("/count").await;
    let id = id_from(&browser.cookie(NAME).unwrap_or_default());
    let path = dir.path().join(format!("{}.json", id.as_str()));
    for garbage in [&b"{\"not\": \"ours\"}"[..], b"\xff\x00garbage", b""] {
        std::fs::write(&path, garbage).expect("the file written");
        // Named by the file, its id replaced by the id's short hash (an id is a credential).
        let named = dir.path().join(format!("{id}.json"));
        let error = store.load(&id).await.err();
        assert!(
            matches!(&error, Some(FsStoreError::Corrupt { path: p, .. }) if *p == named),
            "{error:?}"
        );
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains(&named.display().to_string()) && !message.contains(id.as_str()),
            "{message}"
        );
        // Corrupt data is no outage: a 500, which no retry would fix.
        let response = browser.get("/peek").await;
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_torn_file_and_crash_leftovers_are_harmless() {
    let dir = dir();
    let store = store(dir.path());
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(600), None);
    let id = store.create(&record).await.expect("create");
    // A crash between writing the temporary file and renaming it leaves this behind.
    let leftover = dir.path().join(format!(".tmp-crash-{}.json", id.as_str()));
    std::fs::write(&leftover, b"{\"cloakroom_fs\":1,\"rec").expect("the leftover written");
    let writer = {
        let store = store.clone();
        let id = id.clone();
        tokio::spawn(async move {
            for round in 0..40 {
                let big = format!("\"{}\"", "x".repeat(200_000 + round));
                store.update(&id, &set("big", &big)).await.expect("update");
            }
        })
    };
    while !writer.is_finished() {
        match store.load(&id).await {
            Ok(Some(_)) => {}
            other => panic!("a reader saw {other:?} during writes"),
        }
    }
    let _ = writer.await;
    assert!(leftover.exists(), "a fresh leftover must not be swept yet");
    assert!(matches!(store.load(&id).await, Ok(Some(_))));
}

/// Three `FsStore`s on one directory, as three processes on one server would have: the
/// consistency checker finds no stale read, lost update or revived session. (The report is
/// printed: `scripts/soak.sh`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_directory_agree() {
    let dir = dir();
    let instances = vec![store(dir.path()), store(dir.path()), store(dir.path())];
    let report = cloakroom_testkit::Consistency::new()
        .duration(Duration::from_secs(2))
        .soak_from_env()
        .run(instances)
        .await;
    let report = report.expect("the instances agree");
    println!("FsStore, 3 instances: {report}");
    assert!(report.operations > 500, "{report}");
    assert_eq!(report.failed, 0, "calls failed without a fault: {report}");
}

/// The owners' entries below `dir`.
fn owner_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let owners = std::fs::read_dir(dir.join(".owners")).expect(".owners");
    owners
        .filter_map(Result::ok)
        .flat_map(|owner| std::fs::read_dir(owner.path()).expect("an owner's entries"))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect()
}

/// A session that expired and was then visited (a user back after the idle timeout) takes its
/// owner's entry with it, as a delete and the sweep do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_found_by_a_request_leaves_the_index() {
    let dir = dir();
    let store = FsStore::builder(dir.path())
        .sweep_interval(Duration::from_secs(3600))
        .build()
        .expect("the store");
    for visit in 0..20 {
        let id = store
            .create(&cloakroom_tests::owned("user:1", Duration::from_millis(20)))
            .await
            .expect("create");
        tokio::time::sleep(Duration::from_millis(30)).await;
        if visit % 2 == 0 {
            assert!(store.load(&id).await.expect("load").is_none());
        } else {
            let update = store.update(&id, &set("k", "1")).await.expect("update");
            assert_eq!(update, cloakroom::store::Update::Missing);
        }
    }
    assert_eq!(
        owner_entries(dir.path()).len(),
        0,
        "expired sessions left entries"
    );
}

/// An entry that cannot be removed does not fail the logout, and no error or log line shows
/// the session id; a revoke ends a session whose file cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_index_entry_fails_no_logout_and_shows_no_id() {
    let dir = dir();
    let store = store(dir.path());
    let id = store
        .create(&cloakroom_tests::owned("user:1", Duration::from_secs(60)))
        .await
        .expect("create");
    let entry = owner_entries(dir.path()).pop().expect("an entry");
    std::fs::remove_file(&entry).expect("remove the entry");
    std::fs::create_dir(&entry).expect("a directory in its place");
    std::fs::write(entry.join("x"), b"").expect("a file inside");
    store.delete(&id).await.expect("the logout stands");
    assert!(store.load(&id).await.expect("load").is_none());
    let listed = store.owned("user:1").await.expect("the list");
    assert!(listed.is_empty());

    let other = store
        .create(&cloakroom_tests::owned("user:2", Duration::from_secs(60)))
        .await
        .expect("create");
    std::fs::write(
        dir.path().join(format!("{}.json", other.as_str())),
        b"not json",
    )
    .expect("corrupt the session file");
    let error = store.load(&other).await.expect_err("a corrupt file");
    assert!(!error.to_string().contains(other.as_str()), "{error}");
    assert!(store.owned("user:2").await.expect("the list").is_empty());
    let revoked = store.revoke_all("user:2", None).await.expect("the revoke");
    assert_eq!(revoked.count(), Some(1));
    assert!(!dir.path().join(format!("{}.json", other.as_str())).exists());
}

/// "Log out everywhere" through any of three instances on one directory, racing every other
/// call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revokes_hold_on_every_instance() {
    let dir = dir();
    let instances = vec![store(dir.path()), store(dir.path()), store(dir.path())];
    let report = cloakroom_testkit::Consistency::new()
        .duration(Duration::from_secs(2))
        .run_with_revokes(instances)
        .await;
    let report = report.expect("the instances agree");
    assert!(report.operations > 500, "{report}");
    assert_eq!(report.failed, 0, "calls failed without a fault: {report}");
}

/// A new session in `store`, good for a minute.
async fn created(store: &FsStore) -> SessionId {
    let record = Record::new(std::time::SystemTime::now(), Duration::from_secs(60), None);
    store.create(&record).await.expect("create")
}

/// The mode bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let metadata =
        std::fs::metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    metadata.permissions().mode() & 0o777
}

/// No other user of the machine can read a session: the store makes its directories 0700 and
/// its files 0600, and refuses a directory open to others, naming it, its mode and the fix.
#[tokio::test]
async fn session_files_are_private_and_an_open_directory_is_refused() {
    let parent = dir();
    let sessions = parent.path().join("sessions");
    let store = store(&sessions);
    let id = created(&store).await;
    assert_eq!(mode(&sessions), 0o700, "the session directory");
    assert_eq!(mode(&sessions.join(".locks")), 0o700, "the lock directory");
    for entry in std::fs::read_dir(&sessions).into_iter().flatten().flatten() {
        if entry.path().is_file() {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }
    for entry in std::fs::read_dir(sessions.join(".locks"))
        .into_iter()
        .flatten()
        .flatten()
    {
        assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
    }
    assert!(std::fs::metadata(sessions.join(format!("{}.json", id.as_str()))).is_ok());

    let open = parent.path().join("open");
    std::fs::create_dir(&open).expect("the directory made");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755));
    }
    match FsStore::new(&open) {
        Err(FsStoreError::Exposed { mode, .. }) => assert_eq!(mode, 0o755),
        other => panic!("a directory open to others was accepted: {other:?}"),
    }
    let message = FsStore::new(&open)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("mode 755") && message.contains("chmod 700"),
        "{message}"
    );
}

/// A holder that never lets go of a session's lock (a hung process, a network filesystem)
/// costs a call the lock timeout, not a blocking thread for ever: the call fails with a
/// retryable error (503) and succeeds once the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_for_ever_fails_the_call_after_the_lock_timeout() {
    let dir = dir();
    let store = FsStore::builder(dir.path())
        .lock_timeout(Duration::from_millis(200))
        .build()
        .expect("the store");
    let id = created(&store).await;
    // Another process holds every stripe's lock.
    let held: Vec<std::fs::File> = (0..64)
        .filter_map(|stripe| {
            let file = std::fs::File::open(dir.path().join(".locks").join(stripe.to_string()))
                .or_else(|_| {
                    std::fs::File::create(dir.path().join(".locks").join(stripe.to_string()))
                })
                .ok()?;
            file.lock().ok()?;
            Some(file)
        })
        .collect();
    assert_eq!(held.len(), 64);
    let stuck = tokio::time::timeout(Duration::from_secs(10), store.load(&id)).await;
    match stuck {
        Ok(Err(error @ FsStoreError::LockTimeout { .. })) => {
            assert_eq!(
                error.failure_kind(),
                cloakroom::store::FailureKind::Unavailable
            );
        }
        other => panic!("a held lock: {other:?}"),
    }
    drop(held);
    assert!(matches!(store.load(&id).await, Ok(Some(_))));
}

/// Where the traced child of the durability test keeps its store (set only in the child).
const TRACED_DIR: &str = "CLOAKROOM_FS_TRACED_DIR";

/// A login, a write and a logout the app has answered survive a crash: each new, replaced or
/// removed session file is followed by an `fsync` of the directory before the call returns
/// (until then, a crash can lose the new name or bring the removed one back). Watched with
/// `strace` on a child process running the calls.
#[test]
fn every_create_update_and_delete_syncs_the_directory_before_it_returns() {
    if let Ok(dir) = std::env::var(TRACED_DIR) {
        return traced_calls(std::path::Path::new(&dir));
    }
    let dir = dir();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir(&sessions).expect("the directory made");
    std::fs::set_permissions(
        &sessions,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("the directory made private");
    let log = dir.path().join("strace.log");
    let exe = std::env::current_exe().expect("the test binary's path");
    let name = "every_create_update_and_delete_syncs_the_directory_before_it_returns";
    let status = std::process::Command::new("strace")
        // -y: every file descriptor printed with its path, so an fsync names what it syncs.
        .args(["-f", "-qq", "-y", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=fsync,link,linkat,rename,renameat,renameat2,unlink,unlinkat",
        ])
        .arg(&exe)
        .args([name, "--exact", "--test-threads=1", "--quiet"])
        .env(TRACED_DIR, &sessions)
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(status) => assert!(status.success(), "the traced calls failed: {status}"),
        Err(error) => panic!("cannot run strace ({error}): install the Debian package strace"),
    }
    let log = std::fs::read_to_string(&log).expect("strace's log");
    let dir_synced = format!("<{}>)", sessions.display());
    let mut unsynced: Option<String> = None;
    let mut changed = Vec::new();
    for line in log.lines() {
        let call = line
            .split_once(' ')
            .map_or(line, |(_pid, call)| call.trim_start());
        let ok = !call.contains("= -1");
        // The last path a call names: what a link or rename makes, what an unlink removes.
        let last_path = call
            .rsplit_once('"')
            .and_then(|(before, _)| before.rsplit_once('"'))
            .map_or("", |(_, path)| path);
        let names_session = last_path.ends_with(".json") && !last_path.contains("/.tmp-");
        if ok && call.starts_with("fsync(") {
            if call.contains(&dir_synced) {
                unsynced = None;
            }
        } else if ok && names_session {
            // The session file's name appeared, was replaced or went away.
            if let Some(previous) = unsynced.replace(call.to_owned()) {
                panic!("no directory fsync after {previous}");
            }
            changed.push(call.to_owned());
        }
    }
    assert_eq!(unsynced, None, "no directory fsync after the last change");
    let kinds: Vec<&str> = changed
        .iter()
        .map(|call| call.split('(').next().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds.len(),
        3,
        "expected a link, a rename and an unlink: {changed:#?}"
    );
}

/// The traced child: a create (a hard link), an update (a rename) and a delete (an unlink).
fn traced_calls(dir: &std::path::Path) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let store = store(dir);
        let id = created(&store).await;
        let updated = store.update(&id, &set("user", "\"ada\"")).await;
        assert!(matches!(updated, Ok(cloakroom::store::Update::Applied)));
        store.delete(&id).await.expect("delete");
    });
}
