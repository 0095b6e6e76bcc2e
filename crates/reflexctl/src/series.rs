//! The recorded time series behind the chart: JSON lines, one object per line, every line
//! with `t` (Unix time, seconds, fractional). What else a line carries says what it is:
//!
//! ```text
//! {"t": 1764633600.0, "flow": "ddos", "key": "10.0.0.1", "threshold": 100.0}   header
//! {"t": 1764633600.2, "reflex_rate": 3120.5}        Reflex's estimate (per second)
//! {"t": 1764633600.5, "ovs_rate": 2987.0}           from OVS port counters
//! {"t": 1764633601.3, "threshold": 150.0}           the threshold from then on
//! {"t": 1764633601.1, "event": "auth(10.0.0.1) authenticated -> clear", "block": true}
//! ```
//!
//! Fields may be combined on one line; unknown fields are ignored; blank lines and lines
//! starting with `#` are skipped. Several files (Reflex's recording, a script's OVS
//! counters) merge into one [`Series`], ordered by time.

use serde_json::Value;

/// A marked moment: a threshold event or an FSM change.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub t: f64,
    pub label: String,
    /// The moment of the block (an FSM change made by a threshold reaction).
    pub block: bool,
}

/// Everything a chart draws, times in Unix seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub flow: Option<String>,
    pub key: Option<String>,
    pub reflex: Vec<(f64, f64)>,
    pub ovs: Vec<(f64, f64)>,
    pub threshold: Vec<(f64, f64)>,
    pub marks: Vec<Mark>,
}

fn number(v: &Value, field: &str) -> Result<Option<f64>, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| format!("`{field}` is not a finite number")),
    }
}

impl Series {
    /// Parses one file's text; errors name the line.
    pub fn parse(text: &str) -> Result<Series, String> {
        let mut s = Series::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", i + 1);
            let v: Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            if !v.is_object() {
                return Err(at("not a JSON object".into()));
            }
            let t = number(&v, "t")
                .map_err(at)?
                .ok_or_else(|| at("no `t` (Unix seconds)".into()))?;
            if let Some(x) = number(&v, "reflex_rate").map_err(at)? {
                s.reflex.push((t, x));
            }
            if let Some(x) = number(&v, "ovs_rate").map_err(at)? {
                s.ovs.push((t, x));
            }
            if let Some(x) = number(&v, "threshold").map_err(at)? {
                s.threshold.push((t, x));
            }
            if let Some(e) = v.get("event") {
                let label = e.as_str().map_or_else(|| e.to_string(), str::to_owned);
                let block = v.get("block").and_then(Value::as_bool).unwrap_or(false);
                s.marks.push(Mark { t, label, block });
            }
            if let Some(f) = v.get("flow").and_then(Value::as_str) {
                s.flow = Some(f.to_owned());
            }
            if let Some(k) = v.get("key").and_then(Value::as_str) {
                s.key = Some(k.to_owned());
            }
        }
        s.sort();
        Ok(s)
    }

    /// Adds another file's lines.
    pub fn merge(&mut self, other: Series) {
        self.flow = self.flow.take().or(other.flow);
        self.key = self.key.take().or(other.key);
        self.reflex.extend(other.reflex);
        self.ovs.extend(other.ovs);
        self.threshold.extend(other.threshold);
        self.marks.extend(other.marks);
        self.sort();
    }

    fn sort(&mut self) {
        for v in [&mut self.reflex, &mut self.ovs, &mut self.threshold] {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        self.marks.sort_by(|a, b| a.t.total_cmp(&b.t));
    }

    /// Earliest and latest time of any rate sample (then of anything), if there is one.
    pub fn span(&self) -> Option<(f64, f64)> {
        let rates = self.reflex.iter().chain(&self.ovs).map(|p| p.0);
        let all: Vec<f64> = if self.reflex.is_empty() && self.ovs.is_empty() {
            self.threshold
                .iter()
                .map(|p| p.0)
                .chain(self.marks.iter().map(|m| m.t))
                .collect()
        } else {
            rates.collect()
        };
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lo.is_finite().then_some((lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_every_kind_parse_and_merge_in_time_order() {
        let reflex = "# recorded by reflexctl\n\
            {\"t\": 100.0, \"flow\": \"ddos\", \"key\": \"10.0.0.1\", \"threshold\": 100}\n\
            {\"t\": 100.4, \"reflex_rate\": 50}\n\
            {\"t\": 100.2, \"reflex_rate\": 10}\n\
            \n\
            {\"t\": 101.0, \"event\": \"auth(10.0.0.1) authenticated -> clear\", \"block\": true, \"cause\": \"threshold\"}\n";
        let ovs = "{\"t\": 100.5, \"ovs_rate\": 60.5}\n{\"t\": 99.9, \"ovs_rate\": 0}\n";
        let mut s = Series::parse(reflex).unwrap();
        s.merge(Series::parse(ovs).unwrap());
        assert_eq!(s.flow.as_deref(), Some("ddos"));
        assert_eq!(s.key.as_deref(), Some("10.0.0.1"));
        assert_eq!(s.reflex, vec![(100.2, 10.0), (100.4, 50.0)]);
        assert_eq!(s.ovs, vec![(99.9, 0.0), (100.5, 60.5)]);
        assert_eq!(s.threshold, vec![(100.0, 100.0)]);
        assert_eq!(s.marks.len(), 1);
        assert!(s.marks[0].block);
        assert_eq!(s.span(), Some((99.9, 100.5)));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, want) in [
            ("{\"t\": 1}\nnot json\n", "line 2"),
            ("[1, 2]\n", "not a JSON object"),
            ("{\"reflex_rate\": 1}\n", "no `t`"),
            (
                "{\"t\": 1, \"ovs_rate\": \"fast\"}\n",
                "`ovs_rate` is not a finite number",
            ),
        ] {
            let e = Series::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert_eq!(Series::parse("").unwrap().span(), None);
    }
}
