//! The machine's GPUs, for `compute.gpu`: `CORTEX_ENGINE_GPUS` when set (a count, `2`, or the
//! devices' ids, `0,2`, or `0`/empty for none), otherwise what `nvidia-smi -L` lists, otherwise
//! none. A replica is handed its GPUs as `CUDA_VISIBLE_DEVICES`.

use std::process::{Command, Stdio};

/// The ids of this machine's GPUs, as `CUDA_VISIBLE_DEVICES` names them.
pub(super) fn of_this_machine() -> Vec<String> {
    if let Ok(text) = std::env::var("CORTEX_ENGINE_GPUS") {
        return from_setting(&text);
    }
    Command::new("nvidia-smi")
        .arg("-L")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| listed(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// `CORTEX_ENGINE_GPUS`: a count, or a comma-separated list of device ids.
fn from_setting(text: &str) -> Vec<String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u32>() {
        return (0..n).map(|i| i.to_string()).collect();
    }
    text.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

/// The indices of `nvidia-smi -L` lines (`GPU 0: NVIDIA A10G (UUID: GPU-...)`).
fn listed(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("GPU ")?.split_once(':'))
        .map(|(index, _)| index.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{from_setting, listed};

    #[test]
    fn counts_lists_and_nvidia_smi_lines() {
        assert_eq!(from_setting("2"), ["0", "1"]);
        assert_eq!(from_setting("0"), Vec::<String>::new());
        assert_eq!(from_setting(" 1, 3 "), ["1", "3"]);
        assert_eq!(from_setting(""), Vec::<String>::new());
        let smi = "GPU 0: NVIDIA A10G (UUID: GPU-1)\nGPU 1: NVIDIA A10G (UUID: GPU-2)\n";
        assert_eq!(listed(smi), ["0", "1"]);
        assert_eq!(listed("No devices were found\n"), Vec::<String>::new());
    }
}
