//! The runtime's Prometheus registry, mirrored into OTLP metrics.
//!
//! One source of truth: OTLP carries exactly the series `/metrics` serves, read from the same
//! registry at each export (`metrics_export_interval`) through asynchronous instruments.
//! Counters become OTLP cumulative sums, gauges gauges. The OpenTelemetry API has no
//! asynchronous histogram, so a histogram travels in its Prometheus form: cumulative counters
//! `<name>_bucket{le}`, `<name>_sum` and `<name>_count`, which is what a Prometheus-backed
//! collector would store anyway. Series appear in OTLP once they have appeared in the registry
//! (families are discovered every half interval).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::proto::{Metric, MetricFamily, MetricType};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// How long one registry snapshot serves the instruments' callbacks: all callbacks of one
/// export read the same gather instead of one gather each.
const SNAPSHOT_TTL: Duration = Duration::from_millis(500);

struct Snapshot {
    metrics: Arc<Metrics>,
    taken: Mutex<Option<(Instant, Arc<Vec<MetricFamily>>)>>,
}

impl Snapshot {
    fn families(&self) -> Arc<Vec<MetricFamily>> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, fams)) = taken.as_ref()
            && at.elapsed() < SNAPSHOT_TTL
        {
            return fams.clone();
        }
        crate::telemetry::sync_metrics(&self.metrics);
        let fams = Arc::new(self.metrics.registry().gather());
        *taken = Some((Instant::now(), fams.clone()));
        fams
    }

    fn each(&self, name: &str, mut f: impl FnMut(&Metric, Vec<KeyValue>)) {
        let fams = self.families();
        if let Some(fam) = fams.iter().find(|f| f.name() == name) {
            for m in fam.get_metric() {
                let attrs = m
                    .get_label()
                    .iter()
                    .map(|l| KeyValue::new(l.name().to_owned(), l.value().to_owned()))
                    .collect();
                f(m, attrs);
            }
        }
    }
}

/// Starts mirroring `metrics` into `provider`; stops when `stop` turns true.
pub(crate) fn spawn(
    provider: &SdkMeterProvider,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let meter = provider.meter("caxton-runtime");
    let snapshot = Arc::new(Snapshot {
        metrics,
        taken: Mutex::new(None),
    });
    tokio::spawn(async move {
        let mut known = HashSet::new();
        let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
        loop {
            tokio::select! {
                _ = tick.tick() => register_new(&meter, &snapshot, &mut known),
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    })
}

/// Creates instruments for families not seen before. The SDK keeps an asynchronous
/// instrument's callback for the provider's lifetime, so the handles need not be stored.
fn register_new(meter: &Meter, snapshot: &Arc<Snapshot>, known: &mut HashSet<String>) {
    let fams = snapshot.metrics.registry().gather();
    for fam in &fams {
        let name = fam.name().to_owned();
        if known.contains(&name) {
            continue;
        }
        let help = fam.help().to_owned();
        match fam.get_field_type() {
            MetricType::COUNTER => {
                let s = snapshot.clone();
                let n = name.clone();
                meter
                    .f64_observable_counter(name.clone())
                    .with_description(help)
                    .with_callback(move |o: &dyn AsyncInstrument<f64>| {
                        s.each(&n, |m, a| o.observe(m.get_counter().value(), &a));
                    })
                    .build();
            }
            MetricType::GAUGE => {
                let s = snapshot.clone();
                let n = name.clone();
                meter
                    .f64_observable_gauge(name.clone())
                    .with_description(help)
                    .with_callback(move |o: &dyn AsyncInstrument<f64>| {
                        s.each(&n, |m, a| o.observe(m.get_gauge().value(), &a));
                    })
                    .build();
            }
            MetricType::HISTOGRAM => {
                let (s, n) = (snapshot.clone(), name.clone());
                meter
                    .f64_observable_counter(format!("{name}_bucket"))
                    .with_description(help.clone())
                    .with_callback(move |o: &dyn AsyncInstrument<f64>| {
                        s.each(&n, |m, a| {
                            let h = m.get_histogram();
                            for b in h.get_bucket() {
                                let mut attrs = a.clone();
                                attrs.push(KeyValue::new("le", b.upper_bound().to_string()));
                                o.observe(b.cumulative_count() as f64, &attrs);
                            }
                            let mut attrs = a;
                            attrs.push(KeyValue::new("le", "+Inf"));
                            o.observe(h.get_sample_count() as f64, &attrs);
                        });
                    })
                    .build();
                let (s, n) = (snapshot.clone(), name.clone());
                meter
                    .f64_observable_counter(format!("{name}_sum"))
                    .with_description(help.clone())
                    .with_callback(move |o: &dyn AsyncInstrument<f64>| {
                        s.each(&n, |m, a| o.observe(m.get_histogram().get_sample_sum(), &a));
                    })
                    .build();
                let (s, n) = (snapshot.clone(), name.clone());
                meter
                    .f64_observable_counter(format!("{name}_count"))
                    .with_description(help)
                    .with_callback(move |o: &dyn AsyncInstrument<f64>| {
                        s.each(&n, |m, a| {
                            o.observe(m.get_histogram().get_sample_count() as f64, &a)
                        });
                    })
                    .build();
            }
            // The registry holds no summaries or untyped metrics.
            _ => {}
        }
        known.insert(name);
    }
}
