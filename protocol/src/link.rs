//! The emulated network link between edge and cloud.
//!
//! Applied on the edge side to every message in both directions, so the same
//! experiment means the same thing on loopback and on any machine:
//!
//! - **bandwidth**: a message occupies the link for `bytes × 8 / rate` and messages
//!   queue behind each other (serialisation delay);
//! - **one-way delay** plus **jitter**, uniform in `[−jitter, +jitter]`, never below 0;
//! - **loss**: each 1200-byte packet of a message is lost with probability `loss`; the
//!   transport is reliable, so a loss shows as one probe timeout (RFC 9002 §6.2.1:
//!   `RTT + max(4·jitter, 1 ms) + 25 ms` max ack delay) per lost packet;
//! - **order**: a stream delivers in order, so no message overtakes the one before it.
//!
//! Randomness comes from a [`SessionRng`] seeded per session, so a run is reproducible.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tandem_decoding::SessionRng;
use tokio::time::Instant;

/// Packet size used to turn message bytes into packets for the loss model.
const PACKET_BYTES: usize = 1200;
/// QUIC's default max ack delay (RFC 9000 §18.2).
const MAX_ACK_DELAY: Duration = Duration::from_millis(25);

/// The numbers of one emulated link.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkProfile {
    /// Profile name (`custom` for one given by numbers).
    pub name: String,
    /// One-way delay, milliseconds (RTT is twice this).
    pub one_way_ms: f64,
    /// Jitter: each message's delay varies uniformly by ± this, milliseconds.
    pub jitter_ms: f64,
    /// Edge → cloud rate, Mbit/s.
    pub up_mbps: f64,
    /// Cloud → edge rate, Mbit/s.
    pub down_mbps: f64,
    /// Per-packet loss probability.
    pub loss: f64,
}

/// The named profiles: `(name, one-way ms, jitter ms, up Mbit/s, down Mbit/s, loss,
/// where the numbers come from)`. They are representative figures, not measurements of
/// any one network.
pub const PROFILES: &[(&str, f64, f64, f64, f64, f64, &str)] = &[
    (
        "loopback",
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        "no emulation: the real socket only",
    ),
    (
        "lan",
        0.25,
        0.05,
        1000.0,
        1000.0,
        0.0,
        "switched gigabit Ethernet, sub-millisecond RTT",
    ),
    (
        "wifi",
        3.0,
        1.5,
        100.0,
        200.0,
        0.001,
        "home Wi-Fi 5/6 to a nearby cloud region: RTT ~5-10 ms",
    ),
    (
        "5g",
        12.0,
        4.0,
        50.0,
        300.0,
        0.001,
        "5G NSA eMBB to a cloud region: RTT ~20-30 ms (3GPP TR 38.913 targets 4 ms user plane; deployed networks measure far more)",
    ),
    (
        "lte",
        30.0,
        10.0,
        10.0,
        40.0,
        0.005,
        "4G LTE: RTT ~50-70 ms, uplink ~10 Mbit/s",
    ),
    (
        "wan",
        40.0,
        5.0,
        100.0,
        100.0,
        0.001,
        "cross-continent fibre: RTT ~80 ms",
    ),
    (
        "satellite",
        300.0,
        20.0,
        3.0,
        25.0,
        0.01,
        "geostationary: 35,786 km altitude gives >= 240 ms one way; RTT ~600 ms",
    ),
];

impl LinkProfile {
    /// The profile called `name`, if there is one.
    pub fn named(name: &str) -> Option<Self> {
        PROFILES.iter().find(|p| p.0 == name).map(
            |&(name, one_way_ms, jitter_ms, up_mbps, down_mbps, loss, _)| Self {
                name: name.into(),
                one_way_ms,
                jitter_ms,
                up_mbps,
                down_mbps,
                loss,
            },
        )
    }

    /// Round-trip time without jitter or loss.
    pub fn rtt(&self) -> Duration {
        Duration::from_secs_f64(2.0 * self.one_way_ms / 1e3)
    }

    /// Whether this profile changes anything.
    pub fn is_passthrough(&self) -> bool {
        self.one_way_ms == 0.0
            && self.jitter_ms == 0.0
            && self.up_mbps == 0.0
            && self.down_mbps == 0.0
            && self.loss == 0.0
    }

    fn probe_timeout(&self) -> Duration {
        self.rtt() + Duration::from_secs_f64((4.0 * self.jitter_ms).max(1.0) / 1e3) + MAX_ACK_DELAY
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} ms one way ±{} ms, {}/{} Mbit/s up/down, {}% loss)",
            self.name,
            self.one_way_ms,
            self.jitter_ms,
            self.up_mbps,
            self.down_mbps,
            self.loss * 100.0
        )
    }
}

impl FromStr for LinkProfile {
    type Err = String;

    /// A profile name, or numbers: `delay=MS,jitter=MS,up=MBPS,down=MBPS,loss=P`
    /// (any subset; a rate of 0 means unlimited).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = Self::named(s) {
            return Ok(p);
        }
        if !s.contains('=') {
            let names: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
            return Err(format!(
                "unknown link profile '{s}': expected one of {} or numbers like delay=20,jitter=2,up=10,down=50,loss=0.01",
                names.join(", ")
            ));
        }
        let mut p = Self::named("loopback").expect("listed");
        p.name = "custom".into();
        for part in s.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("link setting '{part}' is not KEY=VALUE"))?;
            let v: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("link setting {key}: '{value}' is not a number >= 0"))?;
            match key.trim() {
                "delay" => p.one_way_ms = v,
                "jitter" => p.jitter_ms = v,
                "up" => p.up_mbps = v,
                "down" => p.down_mbps = v,
                "loss" if v <= 1.0 => p.loss = v,
                "loss" => return Err(format!("link loss must be in [0, 1], got {v}")),
                other => {
                    return Err(format!(
                        "unknown link setting '{other}': expected delay, jitter, up, down or loss"
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// Direction of a message on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Edge to cloud.
    Up,
    /// Cloud to edge.
    Down,
}

/// The delay model of one direction of a link: decides when each message arrives.
#[derive(Debug)]
pub struct Shaper {
    profile: LinkProfile,
    rate_bps: f64,
    rng: SessionRng,
    link_free_at: Option<Instant>,
    last_arrival: Option<Instant>,
}

impl Shaper {
    /// The shaper of one direction, with its own random stream.
    pub fn new(profile: &LinkProfile, dir: Direction, seed: u64) -> Self {
        let (rate, stream) = match dir {
            Direction::Up => (profile.up_mbps, 11),
            Direction::Down => (profile.down_mbps, 12),
        };
        Self {
            profile: profile.clone(),
            rate_bps: rate * 1e6,
            rng: SessionRng::for_stream(seed, stream),
            link_free_at: None,
            last_arrival: None,
        }
    }

    /// When a message of `bytes` handed to the link at `now` arrives.
    pub fn arrival(&mut self, now: Instant, bytes: usize) -> Instant {
        let start = self.link_free_at.map_or(now, |t| t.max(now));
        let serialise = if self.rate_bps > 0.0 {
            Duration::from_secs_f64(bytes as f64 * 8.0 / self.rate_bps)
        } else {
            Duration::ZERO
        };
        self.link_free_at = Some(start + serialise);
        let jitter = (self.rng.uniform() * 2.0 - 1.0) * self.profile.jitter_ms;
        let mut delay = Duration::from_secs_f64((self.profile.one_way_ms + jitter).max(0.0) / 1e3);
        if self.profile.loss > 0.0 {
            for _ in 0..bytes.div_ceil(PACKET_BYTES).max(1) {
                if self.rng.uniform() < self.profile.loss {
                    delay += self.profile.probe_timeout();
                }
            }
        }
        let arrival = (start + serialise + delay).max(self.last_arrival.unwrap_or(now));
        self.last_arrival = Some(arrival);
        arrival
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_parse() {
        let lte: LinkProfile = "lte".parse().unwrap();
        assert_eq!(lte.rtt(), Duration::from_millis(60));
        let c: LinkProfile = "delay=20,up=8,loss=0.5".parse().unwrap();
        assert_eq!((c.one_way_ms, c.up_mbps, c.loss), (20.0, 8.0, 0.5));
        assert!(
            "nope"
                .parse::<LinkProfile>()
                .unwrap_err()
                .contains("lan, wifi")
        );
        assert!("delay=-1".parse::<LinkProfile>().is_err());
        assert!("loss=2".parse::<LinkProfile>().is_err());
        assert!(LinkProfile::named("loopback").unwrap().is_passthrough());
    }

    #[test]
    fn bandwidth_queues_messages_and_order_is_kept() {
        let p: LinkProfile = "delay=10,up=8".parse().unwrap();
        let mut s = Shaper::new(&p, Direction::Up, 1);
        let t0 = Instant::now();
        // 8 Mbit/s: 10 000 bytes take 10 ms on the wire, then 10 ms of delay.
        let a = s.arrival(t0, 10_000);
        assert_eq!(a - t0, Duration::from_millis(20));
        // A second message sent at once queues behind the first.
        let b = s.arrival(t0, 10_000);
        assert_eq!(b - t0, Duration::from_millis(30));
    }

    #[test]
    fn jitter_stays_in_bounds_and_never_reorders() {
        let p: LinkProfile = "delay=5,jitter=5".parse().unwrap();
        let mut s = Shaper::new(&p, Direction::Down, 7);
        let t0 = Instant::now();
        let mut last = t0;
        for i in 0..1000 {
            let now = t0 + Duration::from_micros(i * 100);
            let at = s.arrival(now, 100);
            assert!(at >= last && at >= now);
            assert!(at - now <= Duration::from_millis(10) + Duration::from_micros(100));
            last = at;
        }
    }

    #[test]
    fn loss_costs_probe_timeouts_at_the_configured_rate() {
        let p: LinkProfile = "delay=10,loss=0.2".parse().unwrap();
        let mut s = Shaper::new(&p, Direction::Up, 3);
        let n = 20_000;
        let mut lost = 0;
        let mut t = Instant::now();
        for _ in 0..n {
            t += Duration::from_secs(10);
            let extra = s.arrival(t, 100) - t - Duration::from_millis(10);
            lost += (extra.as_secs_f64() / p.probe_timeout().as_secs_f64()).round() as u64;
        }
        // Binomial(20000, 0.2) lost packets (geometric retries are not modelled): sd 57.
        let rate = lost as f64 / n as f64;
        assert!((rate - 0.2).abs() < 0.015, "loss rate {rate}");
    }
}
