//! tessera-cpu's command line and hostile inputs: every bad argument or image ends with a one-line
//! error and a non-zero status, never a panic; a guest running random code cannot crash the
//! process.

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tessera_tests::{bin_path, run_with_timeout, ChildGuard, RunOutput};

fn tessera(args: &[&str]) -> RunOutput {
    run_with_timeout(
        Command::new(bin_path("tessera-cpu")).args(args),
        Duration::from_secs(30),
    )
    .expect("run tessera-cpu")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

/// Non-zero exit, exactly one line on stderr naming `what`, nothing that looks like a panic.
fn assert_one_line_error(out: &RunOutput, what: &str) {
    assert!(!out.timed_out, "timed out");
    assert!(
        matches!(out.code, Some(c) if c != 0),
        "expected failure, got {:?}; stderr: {}",
        out.code,
        out.stderr
    );
    assert_ne!(
        out.code,
        Some(101),
        "exit 101 is a Rust panic: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "panic: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {:?}", out.stderr);
    assert!(lines[0].starts_with("tessera-cpu: error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(what),
        "error {:?} does not mention {what:?}",
        lines[0]
    );
}

#[test]
fn help_lists_every_option_and_exits_0() {
    let out = tessera(&["--help"]);
    assert_eq!(out.code, Some(0));
    for opt in [
        "--harts",
        "--ram",
        "--bios",
        "--kernel",
        "--initrd",
        "--append",
        "--serial",
        "--dump-dtb",
        "--stats",
    ] {
        assert!(out.stdout.contains(opt), "--help lacks {opt}");
    }
}

#[test]
fn unknown_flag_is_a_one_line_error() {
    assert_one_line_error(&tessera(&["--frobnicate"]), "--frobnicate");
}

#[test]
fn ram_zero_is_rejected() {
    assert_one_line_error(
        &tessera(&["--ram", "0", "--bios", "none", "--kernel", "/dev/null"]),
        "--ram",
    );
}

#[test]
fn ram_with_bad_suffix_is_rejected() {
    assert_one_line_error(&tessera(&["--ram", "12Q"]), "12Q");
}

#[test]
fn zero_harts_is_rejected() {
    assert_one_line_error(
        &tessera(&["--harts", "0", "--bios", "none", "--kernel", "/dev/null"]),
        "--harts",
    );
}

#[test]
fn missing_kernel_file_is_a_one_line_error() {
    assert_one_line_error(
        &tessera(&["--bios", "none", "--kernel", "/nonexistent/kernel.elf"]),
        "/nonexistent/kernel.elf",
    );
}

#[test]
fn missing_firmware_file_is_a_one_line_error() {
    assert_one_line_error(
        &tessera(&["--bios", "/nonexistent/fw.bin"]),
        "/nonexistent/fw.bin",
    );
}

#[test]
fn bios_none_without_kernel_is_rejected() {
    assert_one_line_error(&tessera(&["--bios", "none"]), "--kernel");
}

#[test]
fn truncated_elf_is_a_one_line_error() {
    // A real ELF header cut short: magic and class present, the rest missing.
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(40, 0);
    let p = tmp("truncated.elf");
    std::fs::write(&p, &elf).expect("write");
    assert_one_line_error(
        &tessera(&["--bios", "none", "--kernel", p.to_str().expect("utf8")]),
        "truncated",
    );
}

#[test]
fn elf_with_program_headers_beyond_the_file_is_a_one_line_error() {
    let mut elf = vec![0u8; 64];
    elf[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf[16] = 2; // ET_EXEC
    elf[18] = 243; // EM_RISCV
    elf[20] = 1;
    elf[32..40].copy_from_slice(&0x1000u64.to_le_bytes()); // e_phoff far beyond the file
    elf[54] = 56; // e_phentsize
    elf[56] = 1; // e_phnum
    let p = tmp("badphdr.elf");
    std::fs::write(&p, &elf).expect("write");
    assert_one_line_error(
        &tessera(&["--bios", "none", "--kernel", p.to_str().expect("utf8")]),
        "beyond",
    );
}

#[test]
fn image_larger_than_ram_is_a_one_line_error() {
    let p = tmp("big.bin");
    std::fs::write(&p, vec![0u8; 3 << 20]).expect("write");
    assert_one_line_error(
        &tessera(&[
            "--ram",
            "2M",
            "--bios",
            "none",
            "--kernel",
            p.to_str().expect("utf8"),
        ]),
        "does not fit in RAM",
    );
}

#[test]
fn dump_dtb_writes_a_device_tree_blob() {
    let p = tmp("virt.dtb");
    let _ = std::fs::remove_file(&p);
    let kernel = tmp("dtb_loop.bin");
    std::fs::write(&kernel, 0x0000_006fu32.to_le_bytes()).expect("write"); // j .
    let out = tessera(&[
        "--harts",
        "2",
        "--bios",
        "none",
        "--kernel",
        kernel.to_str().expect("utf8"),
        "--dump-dtb",
        p.to_str().expect("utf8"),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let blob = std::fs::read(&p).expect("dtb written");
    assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed], "FDT magic");
    let total = u32::from_be_bytes([blob[4], blob[5], blob[6], blob[7]]) as usize;
    assert_eq!(total, blob.len(), "FDT totalsize matches the file");
}

/// An empty kernel image is refused with a one-line error.
#[test]
fn empty_kernel_image_is_a_one_line_error() {
    assert_one_line_error(
        &tessera(&["--bios", "none", "--kernel", "/dev/null"]),
        "empty",
    );
}

/// Random instruction words executed in M-mode with a trap handler that skips the faulting
/// instruction: CSR writes, wild loads/stores, illegal encodings, jumps anywhere. Whatever the
/// guest does, the process must keep running until it is told to stop, then stop cleanly.
#[test]
fn random_guest_code_never_crashes_the_process() {
    // Prologue: mtvec = handler; handler: mepc += 4, mret. Then random words.
    let prologue: [u32; 8] = [
        0x0000_0297, // auipc t0, 0
        0x0202_8293, // addi  t0, t0, 32   -> handler at +32
        0x3052_9073, // csrw  mtvec, t0
        0x0400_006f, // j     +64 (over the handler, into the random words)
        0x0000_0013, // nop
        0x0000_0013, // nop
        0x0000_0013, // nop
        0x0000_0013, // nop
    ];
    let handler: [u32; 8] = [
        0x3410_2373, // csrr  t1, mepc
        0x0043_0313, // addi  t1, t1, 4
        0x3413_1073, // csrw  mepc, t1
        0x3020_0073, // mret
        0x0000_0013,
        0x0000_0013,
        0x0000_0013,
        0x0000_0013,
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..4 {
        let mut words: Vec<u32> = prologue.iter().chain(handler.iter()).copied().collect();
        for _ in 0..4096 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let w = seed as u32;
            // Never write the test finisher by accident often: any exit is fine, but we want runtime.
            words.push(w);
        }
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let p = tmp(&format!("random{round}.bin"));
        std::fs::write(&p, &bytes).expect("write");
        let mut g = ChildGuard::spawn(
            Command::new(bin_path("tessera-cpu"))
                .args([
                    "--harts", "2", "--serial", "none", "--bios", "none", "--kernel",
                ])
                .arg(&p)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped()),
        )
        .expect("spawn");
        let early = g.wait_timeout(Duration::from_millis(700)).expect("wait");
        // Alternate SIGTERM and SIGINT (Ctrl-C): both stop the machine cleanly.
        let sig = if round % 2 == 0 {
            nix::sys::signal::Signal::SIGTERM
        } else {
            nix::sys::signal::Signal::SIGINT
        };
        if early.is_none() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(g.id() as i32), sig).expect("kill");
        }
        let status = match early {
            Some(s) => s,
            None => g
                .wait_timeout(Duration::from_secs(10))
                .expect("wait")
                .expect("exits after SIGTERM"),
        };
        let mut err = String::new();
        if let Some(mut e) = g.child().stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(!err.contains("panicked"), "round {round}: panic: {err}");
        assert!(
            status.code().is_some(),
            "round {round}: killed by a signal: {status:?} {err}"
        );
        assert_ne!(status.code(), Some(101), "round {round}: panic exit: {err}");
        if early.is_none() {
            assert_eq!(
                status.code(),
                Some(130),
                "round {round}: {sig:?} should stop with 130: {err}"
            );
        }
    }
}

/// `--append` and `--initrd` reach the device tree's /chosen node, with the initrd placed in RAM.
#[test]
fn append_and_initrd_appear_in_the_device_tree() {
    let initrd = tmp("initrd.img");
    std::fs::write(&initrd, vec![0x5au8; 100_000]).expect("write");
    let dtb = tmp("chosen.dtb");
    let _ = std::fs::remove_file(&dtb);
    let kernel = tmp("one_insn.bin");
    std::fs::write(&kernel, 0x0000_006fu32.to_le_bytes()).expect("write"); // j .
    let out = tessera(&[
        "--bios",
        "none",
        "--kernel",
        kernel.to_str().expect("utf8"),
        "--initrd",
        initrd.to_str().expect("utf8"),
        "--append",
        "console=ttyS0 tessera.test=1",
        "--dump-dtb",
        dtb.to_str().expect("utf8"),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let dts = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(&dtb)
        .output()
        .expect("dtc missing: install Debian's `device-tree-compiler` (scripts/setup.sh does)");
    let dts = String::from_utf8_lossy(&dts.stdout);
    assert!(
        dts.contains("bootargs = \"console=ttyS0 tessera.test=1\""),
        "{dts}"
    );
    let cell = |name: &str| -> u64 {
        let line = dts
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} in {dts}"));
        let cells: Vec<u64> = line
            .split(['<', '>'])
            .nth(1)
            .expect("cells")
            .split_whitespace()
            .map(|c| u64::from_str_radix(c.trim_start_matches("0x"), 16).expect("hex cell"))
            .collect();
        cells.iter().fold(0, |acc, c| (acc << 32) | c)
    };
    let (start, end) = (cell("linux,initrd-start"), cell("linux,initrd-end"));
    assert_eq!(end - start, 100_000);
    assert_eq!(start % 4096, 0, "initrd page aligned");
    assert!(
        start >= 0x8000_0000 && end <= 0x8000_0000 + (256 << 20),
        "initrd {start:#x}-{end:#x} outside RAM"
    );
}

/// `--serial file:PATH` writes the guest's UART output to the file (and not to stdout).
#[test]
fn serial_file_receives_guest_output() {
    // lui t0,0x10000; li t1,'h'; sb; li t1,'i'; sb; li t1,'\n'; sb; lui t0,0x100; li t1,0x5555; sw; j .
    let prog: [u32; 12] = [
        0x1000_02b7,
        0x0680_0313,
        0x0062_8023,
        0x0690_0313,
        0x0062_8023,
        0x00a0_0313,
        0x0062_8023,
        0x0010_02b7,
        0x0000_5337,
        0x5553_0313,
        0x0062_a023,
        0x0000_006f,
    ];
    let kernel = tmp("hi.bin");
    std::fs::write(
        &kernel,
        prog.iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .expect("write");
    let log = tmp("serial.log");
    let _ = std::fs::remove_file(&log);
    let out = tessera(&[
        "--bios",
        "none",
        "--kernel",
        kernel.to_str().expect("utf8"),
        "--serial",
        &format!("file:{}", log.display()),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&log).expect("serial log"), "hi\n");
    assert!(
        !out.stdout.contains("hi"),
        "output leaked to stdout: {:?}",
        out.stdout
    );
}

/// Harts that execute WFI with nothing pending park their host threads: while hart 0 runs
/// 3 million instructions, harts 1-3 (in a `wfi; j` loop) retire only a handful. A WFI that
/// returned at once would make them spin through millions.
#[test]
fn wfi_parks_idle_harts() {
    let src = tmp("wfi_park.S");
    std::fs::write(
        &src,
        "    .globl _start\n_start:\n    csrr t0, mhartid\n    bnez t0, park\n    li t1, 1000000\n\
         1:  addi t1, t1, -1\n    bnez t1, 1b\n    li t0, 0x100000\n    li t1, 0x5555\n    sw t1, 0(t0)\n\
         2:  j 2b\npark:\n    wfi\n    j park\n",
    )
    .expect("write");
    let elf = tmp("wfi_park.elf");
    let cc = Command::new("riscv64-unknown-elf-gcc")
        .args([
            "-march=rv64imac_zicsr",
            "-mabi=lp64",
            "-nostdlib",
            "-nostartfiles",
            "-Wl,-Ttext=0x80000000",
            "-Wl,-n",
            "-o",
        ])
        .arg(&elf)
        .arg(&src)
        .output()
        .expect("riscv64-unknown-elf-gcc missing: install Debian's `gcc-riscv64-unknown-elf`");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = tessera(&[
        "--harts",
        "4",
        "--bios",
        "none",
        "--stats",
        "--kernel",
        elf.to_str().expect("utf8"),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let count = |hart: u32| -> u64 {
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("tessera-cpu: hart{hart}: ")))
            .unwrap_or_else(|| panic!("no stats for hart{hart}: {}", out.stderr));
        line.split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .expect("instruction count")
    };
    assert!(count(0) > 2_000_000, "hart0 ran {}", count(0));
    for h in 1..4 {
        assert!(
            count(h) < 10_000,
            "hart{h} retired {} instructions: WFI did not park it",
            count(h)
        );
    }
}

/// The device servers follow the same conventions: a bad argument or a missing image is one
/// line on stderr and a non-zero exit.
#[test]
fn device_servers_report_bad_arguments_in_one_line() {
    let sock = tmp("never.sock");
    let cases: [(&str, Vec<String>, &str); 3] = [
        ("tessera-blk", vec!["--frob".into()], "--frob"),
        (
            "tessera-blk",
            vec![
                "--socket".into(),
                sock.display().to_string(),
                "--image".into(),
                "/nonexistent/disk.img".into(),
            ],
            "/nonexistent/disk.img",
        ),
        (
            "tessera-console",
            vec![
                "--socket".into(),
                sock.display().to_string(),
                "--output".into(),
                "bogus".into(),
            ],
            "bogus",
        ),
    ];
    for (bin, args, what) in cases {
        let out = run_with_timeout(
            Command::new(bin_path(bin)).args(&args),
            Duration::from_secs(30),
        )
        .expect("run");
        assert!(
            matches!(out.code, Some(c) if c != 0 && c != 101),
            "{bin} {args:?}: {out:?}"
        );
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{bin} {args:?}: {}", out.stderr);
        assert!(
            lines[0].starts_with(&format!("{bin}: error: ")) && lines[0].contains(what),
            "{}",
            lines[0]
        );
    }
}
