//! The build of the target, read from its `caxton_build_info{version,commit}` series, so a
//! report (and every history built from reports) names what it measured.

use std::time::Duration;

use caxton_reports::model::TargetBuild;

/// The series the runtime exposes (`BUILD_INFO` in runtime/src/metrics.rs; not
/// imported, so a load-only build needs no runtime).
const BUILD_INFO: &str = "caxton_build_info";

/// Reads the build from a Prometheus text endpoint; `None` (with a warning) when there is no
/// URL, it does not answer, or it has no such series: the run's figures stand without it.
pub(crate) async fn read(metrics_url: Option<&str>) -> Option<TargetBuild> {
    let url = metrics_url?;
    let text = match fetch(url).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("caxton-bench: warning: the target's build is unknown: GET {url}: {e}");
            return None;
        }
    };
    let build = parse(&text);
    if build.is_none() {
        eprintln!(
            "caxton-bench: warning: {url} has no {BUILD_INFO} series; the target's build is unknown"
        );
    }
    build
}

async fn fetch(url: &str) -> Result<String, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

/// The labels of the first `caxton_build_info{...}` sample of a text exposition.
pub(crate) fn parse(text: &str) -> Option<TargetBuild> {
    let line = text
        .lines()
        .find(|l| l.starts_with(BUILD_INFO) && l[BUILD_INFO.len()..].starts_with('{'))?;
    let labels = &line[BUILD_INFO.len() + 1..line.rfind('}')?];
    let label = |name: &str| {
        let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
        let end = labels[start..].find('"')? + start;
        Some(labels[start..end].to_string())
    };
    Some(TargetBuild {
        version: label("version")?,
        commit: label("commit").unwrap_or_else(|| "unknown".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_labels_are_read() {
        let text = "# HELP caxton_build_info x\n# TYPE caxton_build_info gauge\n\
                    caxton_build_info{commit=\"abc123\",version=\"0.2.0\"} 1\n";
        assert_eq!(
            parse(text),
            Some(TargetBuild {
                version: "0.2.0".into(),
                commit: "abc123".into()
            })
        );
        assert_eq!(parse("caxton_build_info_other{version=\"1\"} 1"), None);
        assert_eq!(parse(""), None);
    }
}
