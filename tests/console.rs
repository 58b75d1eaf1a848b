//! The console a user sees: a command that succeeds prints no `error:` line, even without the
//! desktop session's runtime directory that Mesa's Vulkan driver probes for.

use std::process::{Command, Stdio};

#[test]
fn a_successful_command_prints_no_error_line_without_a_runtime_dir() {
    let out = Command::new(env!("CARGO_BIN_EXE_vqgpu"))
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("vqgpu runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "vqgpu info failed: {stderr}");
    assert!(
        stdout.contains("selected:"),
        "info lists adapters and the one it uses: {stdout}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert!(errors.is_empty(), "lines about errors: {errors:?}");
}

#[test]
fn an_unknown_kernel_set_is_one_clear_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_vqgpu"))
        .arg("info")
        .env("VQGPU_KERNELS", "fastest")
        .output()
        .expect("vqgpu runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown kernel set must fail");
    assert!(
        stderr.contains("kernel set must be gpu or cpu") && stderr.contains("fastest"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn info_names_the_kernel_set_it_would_use() {
    for set in ["gpu", "cpu"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vqgpu"))
            .arg("info")
            .env("VQGPU_KERNELS", set)
            .output()
            .expect("vqgpu runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("kernel set: {set}")), "{stdout}");
    }
}

#[cfg(unix)]
#[test]
fn output_into_a_closed_pipe_ends_the_command_without_a_panic() {
    // the reading end closes before vqgpu prints (it opens the device first), as with `| head -0`
    let mut child = Command::new(env!("CARGO_BIN_EXE_vqgpu"))
        .arg("info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vqgpu runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("vqgpu ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{stderr}");
}
