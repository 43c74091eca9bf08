//! What CPU a host has, in words. x86's /proc/cpuinfo names it (`model name`); aarch64's
//! gives only the implementer and part codes, decoded here, so that reports from Kunpeng
//! and Phytium hosts say what they ran on.

/// The value of a /proc/cpuinfo field on its first core, trimmed.
fn field<'a>(cpuinfo: &'a str, name: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// The host's CPU model: x86's `model name`, or the decoded aarch64 codes.
pub fn model(cpuinfo: &str) -> Option<String> {
    field(cpuinfo, "model name")
        .map(str::to_string)
        .or_else(|| arm(cpuinfo))
}

/// An aarch64 CPU from its `CPU implementer` and `CPU part` codes: "HiSilicon Kunpeng 920
/// (TaiShan v110)", "Phytium FTC663", "Arm Cortex-A72"... Codes as util-linux's `lscpu`
/// knows them; an unknown part keeps its code. `None` when the host is not aarch64.
pub fn arm(cpuinfo: &str) -> Option<String> {
    let implementer = field(cpuinfo, "CPU implementer")?.to_ascii_lowercase();
    let part = field(cpuinfo, "CPU part")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let known: Option<(&str, &[(&str, &str)])> = match implementer.as_str() {
        "0x48" => Some((
            "HiSilicon",
            &[
                ("0xd01", "Kunpeng 920 (TaiShan v110)"),
                ("0xd02", "TaiShan v120"),
            ],
        )),
        "0x70" => Some((
            "Phytium",
            &[
                ("0x660", "FTC660"),
                ("0x661", "FTC661"),
                ("0x662", "FTC662"),
                ("0x663", "FTC663"),
                ("0x664", "FTC664"),
                ("0x862", "FTC862"),
            ],
        )),
        "0x41" => Some((
            "Arm",
            &[
                ("0xd03", "Cortex-A53"),
                ("0xd07", "Cortex-A57"),
                ("0xd08", "Cortex-A72"),
                ("0xd09", "Cortex-A73"),
                ("0xd0b", "Cortex-A76"),
                ("0xd0c", "Neoverse N1"),
                ("0xd40", "Neoverse V1"),
                ("0xd49", "Neoverse N2"),
                ("0xd4f", "Neoverse V2"),
            ],
        )),
        "0x61" => Some(("Apple", &[])),
        "0xc0" => Some(("Ampere", &[("0xac3", "Ampere-1"), ("0xac4", "Ampere-1a")])),
        _ => None,
    };
    let (vendor, parts) = match known {
        Some((vendor, parts)) => (vendor.to_string(), parts),
        None => (format!("vendor {implementer}"), &[][..]),
    };
    Some(match parts.iter().find(|(code, _)| *code == part) {
        Some((_, model)) => format!("{vendor} {model}"),
        None if part.is_empty() => vendor,
        None => format!("{vendor} part {part}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_arm_cpu_from_its_codes() {
        let kunpeng = "processor\t: 0\nBogoMIPS\t: 200.00\nCPU implementer\t: 0x48\n\
                       CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd01\n";
        assert_eq!(
            arm(kunpeng).as_deref(),
            Some("HiSilicon Kunpeng 920 (TaiShan v110)")
        );
        // What qemu's `-cpu cortex-a72` shows (scripts/aarch64.sh).
        let a72 = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n\
                   processor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n";
        assert_eq!(arm(a72).as_deref(), Some("Arm Cortex-A72"));
        assert_eq!(
            arm("CPU implementer : 0x70\nCPU part : 0x663").as_deref(),
            Some("Phytium FTC663")
        );
        assert_eq!(
            arm("CPU implementer : 0x70\nCPU part : 0x999").as_deref(),
            Some("Phytium part 0x999")
        );
        assert_eq!(
            arm("CPU implementer : 0x51").as_deref(),
            Some("vendor 0x51")
        );
        assert_eq!(arm("vendor_id : GenuineIntel\nmodel name : Xeon"), None);
    }

    #[test]
    fn model_names_x86_and_aarch64_alike() {
        assert_eq!(
            model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu").as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(
            model("CPU implementer : 0x48\nCPU part : 0xd01").as_deref(),
            Some("HiSilicon Kunpeng 920 (TaiShan v110)")
        );
        assert_eq!(model(""), None);
    }
}
