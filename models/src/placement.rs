//! Where a model runs and in what precision: the `--device cpu|cuda[:N]` and
//! `--dtype f32|bf16|f16` every model-loading command takes, and `device`/`dtype` in an
//! experiment's `[models]`.
//!
//! A [`Placement`] turns into [`LoadOptions`]. Without a `--dtype`, a model runs in f32
//! on the CPU (the bit-exact row-wise attention and the block-quantized kernels are
//! f32-only) and in bf16 on a GPU. A GGUF file's quantized weights are kept as stored at
//! f32; at bf16 or f16 they are dequantized to that dtype (see [`crate::load`]).
//!
//! CUDA needs a build with the `cuda` feature (`tools/build-cuda.sh`); asking another
//! build for it is an error that says so, never a silent CPU run.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::error::{ModelError, Result};
use crate::load::LoadOptions;

/// A device named on a command line or in a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU (candle's backend, on every core unless `RAYON_NUM_THREADS` says less).
    #[default]
    Cpu,
    /// CUDA GPU number `N` (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl DeviceChoice {
    /// Opens the device. CUDA in a build without the `cuda` feature is an error naming
    /// the build to use.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) if cuda_built() => Device::new_cuda(n)
                .map_err(|e| ModelError::Unsupported(format!("opening cuda:{n}: {e}"))),
            DeviceChoice::Cuda(_) => Err(ModelError::Unsupported(
                "this build has no CUDA support: build with `--features cuda` \
                 (tools/build-cuda.sh), or run on the CPU (--device cpu; device = \"cpu\" \
                 in a config)"
                    .into(),
            )),
        }
    }

    /// Whether this is a GPU.
    pub fn is_gpu(self) -> bool {
        matches!(self, DeviceChoice::Cuda(_))
    }
}

/// Whether this binary was built with the `cuda` feature.
pub fn cuda_built() -> bool {
    cfg!(feature = "cuda")
}

impl FromStr for DeviceChoice {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            ModelError::Unsupported(format!(
                "unknown device {s:?}: expected cpu, cuda or cuda:N (N a GPU number)"
            ))
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The precision of a model's activations, dense weights and KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// bfloat16 (GPUs; candle's CPU backend runs it slowly).
    Bf16,
    /// IEEE half.
    F16,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }
}

impl FromStr for Precision {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "float16" | "half" => Ok(Precision::F16),
            _ => Err(ModelError::Unsupported(format!(
                "unknown dtype {s:?}: expected f32, bf16 or f16"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

/// A device and, if given, a precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    /// Where the model runs.
    pub device: DeviceChoice,
    /// Its precision; `None` picks the device's default (f32 on the CPU, bf16 on a GPU).
    pub precision: Option<Precision>,
}

impl Placement {
    /// The precision the model will run in.
    pub fn precision(&self) -> Precision {
        self.precision.unwrap_or(if self.device.is_gpu() {
            Precision::Bf16
        } else {
            Precision::F32
        })
    }

    /// Load options for this placement (the device opened; no layer selection).
    pub fn load_options(&self) -> Result<LoadOptions> {
        Ok(LoadOptions {
            device: self.device.open()?,
            dtype: self.precision().dtype(),
            ..LoadOptions::default()
        })
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.device, self.precision())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for (s, d) in [
            ("cpu", DeviceChoice::Cpu),
            ("CUDA", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), d);
            assert_eq!(d.to_string().parse::<DeviceChoice>().unwrap(), d);
        }
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", "metal"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn precision_defaults_to_the_devices() {
        let cpu = Placement::default();
        assert_eq!(cpu.precision(), Precision::F32);
        let gpu = Placement {
            device: DeviceChoice::Cuda(1),
            precision: None,
        };
        assert_eq!(gpu.precision(), Precision::Bf16);
        assert_eq!(gpu.to_string(), "cuda:1 bf16");
        let f16 = Placement {
            precision: Some("half".parse().unwrap()),
            ..gpu
        };
        assert_eq!(f16.precision().dtype(), DType::F16);
        assert!("f64".parse::<Precision>().is_err());
    }

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn cuda_without_the_feature_says_how_to_build_it() {
        let e = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
        let e = Placement {
            device: DeviceChoice::Cuda(0),
            precision: None,
        }
        .load_options()
        .unwrap_err()
        .to_string();
        assert!(e.contains("tools/build-cuda.sh"), "{e}");
    }
}
