//! Simulcast layers (RFC 8853): what a publisher's video layers carry, as viewers and the
//! control plane see them.
//!
//! A publisher announces its layers by rid in its offer ([`crate::Published::layers`]); their
//! order there means nothing (OBS's rid `0` is its biggest, a browser's `q` its smallest).
//! The shard orders them by what they carry: resolution read from their keyframes, else their
//! measured bitrate.

/// At most this many layers per publisher (OBS sends 1–4, browsers 1–3); rids past it are
/// not answered.
pub const MAX_LAYERS: usize = 4;

/// One video layer of a stream, as [`crate::Command::StreamLayers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The rid the publisher announced (empty for a publisher without simulcast).
    pub rid: String,
    /// Width and height read from the layer's latest keyframe, when its codec tells.
    pub resolution: Option<(u32, u32)>,
    /// Bits per second over the last measurement window.
    pub bitrate_bps: u64,
    /// Packets arrived on it lately (a layer the encoder dropped, or never sent, is not).
    pub active: bool,
}
