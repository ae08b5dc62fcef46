//! The real binary under a small open-file limit: more half-open sockets than descriptors do not
//! make the accept loop spin, and service resumes; connection settings out of bounds stop the
//! service at start.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{ServerProcess, Workspace};

/// `portcullis serve` run by `sh` under `ulimit -n <limit>` (setting the limit in `pre_exec`
/// would need `unsafe`).
fn serve_with_open_file_limit(ws: &Workspace, limit: u32, envs: &[(&str, &str)]) -> Command {
    let inner = ws.command();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" serve --bind 127.0.0.1:0"
        ))
        .arg(inner.get_program())
        .current_dir(ws.path())
        .env_clear();
    for (key, value) in inner.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command.envs(envs.iter().copied());
    command
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn connect_from(ip: &str, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

fn health_from(ip: &str, server: SocketAddr) -> Option<String> {
    let mut stream = connect_from(ip, server).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: portcullis\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Runs `command` to its end; a server that starts instead is killed after `limit`.
fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn more_slow_sockets_than_descriptors_neither_spin_nor_stop_the_service() {
    let ws = Workspace::new();
    let server = ServerProcess::start(serve_with_open_file_limit(
        &ws,
        256,
        &[("PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS", "4")],
    ));
    let address: SocketAddr = server
        .base_url
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();

    // 300 half-sent requests from 10 addresses (30 each, under the per-address cap).
    let mut slow = Vec::new();
    for n in 0..300 {
        let ip = format!("127.0.0.{}", 2 + n % 10);
        if let Ok(mut stream) = connect_from(&ip, address) {
            let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: portcullis\r\nX-Slow: ");
            slow.push(stream);
        }
    }
    let pid = server.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // 2 s at 100 ticks/s: a spinning loop takes about 200; waiting takes next to nothing.
    assert!(used < 40, "the server used {used} ticks in 2 s");

    // The slow sockets are closed after the header timeout; others are served again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(response) = health_from("127.0.0.20", address) {
            if response.starts_with("HTTP/1.1 200 OK") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "service resumes");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(slow);
    assert!(server.terminate(), "a SIGTERM is a clean shutdown");
}

#[test]
fn connection_settings_out_of_bounds_stop_the_service_at_start() {
    let ws = Workspace::new();
    for (variable, value, message) in [
        (
            "PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS",
            "0",
            "PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS must be between 1 and 3600 seconds",
        ),
        (
            "PORTCULLIS_BODY_READ_TIMEOUT_SECONDS",
            "3601",
            "PORTCULLIS_BODY_READ_TIMEOUT_SECONDS must be between 1 and 3600 seconds",
        ),
        (
            "PORTCULLIS_IDLE_TIMEOUT_SECONDS",
            "0",
            "PORTCULLIS_IDLE_TIMEOUT_SECONDS must be between 1 and 3600 seconds",
        ),
        (
            "PORTCULLIS_MAX_HEADER_BYTES",
            "100",
            "PORTCULLIS_MAX_HEADER_BYTES must be between 1024 and 1048576",
        ),
        (
            "PORTCULLIS_MAX_CONNECTIONS_PER_ADDRESS",
            "0",
            "PORTCULLIS_MAX_CONNECTIONS_PER_ADDRESS must be between 1 and 100000, not 0",
        ),
    ] {
        let mut command = ws.command();
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env(variable, value);
        let output = output_within(command, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{variable}={value}: {stderr}"
        );
        assert!(stderr.contains(message), "{variable}={value}: {stderr}");
    }

    // A global cap that does not fit below the open-file limit.
    let output = output_within(
        serve_with_open_file_limit(&ws, 256, &[("PORTCULLIS_MAX_CONNECTIONS", "1000")]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("PORTCULLIS_MAX_CONNECTIONS (1000) must be at most 160"),
        "{stderr}"
    );
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_and_closes_idle_connections() {
    let ws = Workspace::new();
    let mut command = ws.command();
    command.args(["serve", "--bind", "127.0.0.1:0"]);
    let mut server = ServerProcess::start(command);
    let address: SocketAddr = server
        .base_url
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();

    let mut idle = TcpStream::connect(address).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: portcullis\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(idle.read(&mut buf).unwrap() > 0, "an answer to /health");

    let body = "username=nobody&password=wrong-password";
    let mut in_flight = TcpStream::connect(address).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    in_flight
        .write_all(
            format!(
                "POST /token HTTP/1.1\r\nHost: portcullis\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                &body[..8]
            )
            .as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let stopping = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    std::thread::sleep(Duration::from_millis(300));
    in_flight.write_all(&body.as_bytes()[8..]).unwrap();
    let mut response = Vec::new();
    let _ = in_flight.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized"),
        "the request in flight is answered: {response:?}"
    );
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "the idle connection is closed"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server stops");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(9),
        "without waiting for the idle connection"
    );
}
