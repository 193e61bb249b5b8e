//! `sluiced` where io_uring is blocked (as a container's seccomp profile
//! does): it must say so, name the cause and the fix, and exit non-zero.
//! The test installs a seccomp filter in the child before exec that fails
//! io_uring_setup with EPERM.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn block_io_uring() -> std::io::Result<()> {
    let nr = libc::SYS_io_uring_setup as u32;
    let filter = [
        // Load the architecture; anything unexpected is allowed through.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH,
            0,
            3,
        ),
        // Load the syscall number.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr, 0, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: called in the forked child before exec; prctl only reads the
    // filter program, which outlives the calls.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn blocked_io_uring_is_reported_with_cause_and_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluiced"));
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path());
    // SAFETY: block_io_uring only calls async-signal-safe prctl.
    unsafe {
        cmd.pre_exec(block_io_uring);
    }
    let out = cmd.output().expect("run sluiced");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "sluiced should fail without io_uring; stderr: {stderr}"
    );
    assert!(
        stderr.contains("io_uring is unavailable"),
        "no diagnosis in: {stderr}"
    );
    assert!(
        stderr.contains("EPERM") && stderr.contains("seccomp"),
        "cause not named in: {stderr}"
    );
    assert!(stderr.contains("Fix:"), "no fix given in: {stderr}");
    // Nothing was started: no metadata was written.
    assert!(!dir.path().join("__cluster_metadata.json").exists());
}
