//! A run's curves: values by step and images seen, with TensorBoard's debiased EMA
//! smoothing kept up to date incrementally, decimation for drawing, and CSV export.

/// One value of a curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Optimizer steps done when it was measured.
    pub step: u64,
    /// Training images seen by then.
    pub images: u64,
    /// The value.
    pub value: f32,
}

/// A curve and its smoothed twin.
#[derive(Clone, Debug, Default)]
pub struct Series {
    points: Vec<Point>,
    /// Smoothed values for `points[..smoothed.len()]`, for weight `weight`.
    smoothed: Vec<f32>,
    weight: f32,
    ema: f64,
}

impl Series {
    /// Appends a point.
    pub fn push(&mut self, p: Point) {
        self.points.push(p);
    }

    /// Drops the points measured after `step` (a run restarted from an earlier point).
    pub fn truncate_after(&mut self, step: u64) {
        let keep = self.points.partition_point(|p| p.step <= step);
        self.points.truncate(keep);
        // The moving average of the dropped points is in `ema`: smooth again from the start.
        self.smoothed.clear();
        self.ema = 0.0;
    }

    /// Every point, in order.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True without points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The last value.
    pub fn last(&self) -> Option<f32> {
        self.points.last().map(|p| p.value)
    }

    /// TensorBoard's smoothing: an exponential moving average with weight `w` in [0, 1),
    /// divided by 1 - w^n so that the first points are not pulled towards zero. Extends
    /// the cached result by the new points only (recomputed when `w` changes).
    pub fn smoothed(&mut self, w: f32) -> &[f32] {
        self.smooth(w);
        &self.smoothed
    }

    /// Brings the smoothed values (see [`Series::smoothed`]) up to date for weight `w`.
    pub fn smooth(&mut self, w: f32) {
        let w = w.clamp(0.0, 0.999);
        if w != self.weight {
            self.weight = w;
            self.smoothed.clear();
            self.ema = 0.0;
        }
        let wd = f64::from(w);
        for p in &self.points[self.smoothed.len()..] {
            self.ema = self.ema * wd + (1.0 - wd) * f64::from(p.value);
            let n = self.smoothed.len() as i32 + 1;
            let debias = 1.0 - wd.powi(n);
            let v = if debias > 0.0 {
                self.ema / debias
            } else {
                f64::from(p.value)
            };
            self.smoothed.push(v as f32);
        }
    }

    /// The smoothed values as of the last [`Series::smooth`], one per point.
    pub fn smoothed_values(&self) -> &[f32] {
        &self.smoothed
    }
}

/// Indices of at most `max` points spread evenly over `len` (always the first and last),
/// so a million-step curve draws as fast as a short one.
pub fn decimate(len: usize, max: usize) -> impl Iterator<Item = usize> {
    let stride = len.div_ceil(max.max(2)).max(1);
    (0..len)
        .step_by(stride)
        .chain((len > 0 && !(len - 1).is_multiple_of(stride)).then(|| len - 1))
}

/// Curves of a classifier run (loss, accuracy) or a GAN run (D and G losses in the loss
/// curves' places).
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Training loss per step (the GAN: the discriminator's).
    pub train_loss: Series,
    /// Training accuracy per step (dropout active; the GAN: the generator's loss).
    pub train_acc: Series,
    /// Validation loss per validation pass.
    pub val_loss: Series,
    /// Validation accuracy per validation pass.
    pub val_acc: Series,
}

impl History {
    /// Drops every value measured after `step`.
    pub fn truncate_after(&mut self, step: u64) {
        for s in [
            &mut self.train_loss,
            &mut self.train_acc,
            &mut self.val_loss,
            &mut self.val_acc,
        ] {
            s.truncate_after(step);
        }
    }

    /// The history as CSV: one row per training step, with the validation values on the
    /// steps that have them.
    pub fn to_csv(&self, first_col: &str, second_col: &str) -> String {
        let mut s = format!("step,images,{first_col},{second_col},val_loss,val_acc\n");
        let mut v = 0;
        let val = self.val_loss.points();
        let val_acc = self.val_acc.points();
        for (i, p) in self.train_loss.points().iter().enumerate() {
            let second = self
                .train_acc
                .points()
                .get(i)
                .map_or(String::new(), |q| q.value.to_string());
            let (mut vl, mut va) = (String::new(), String::new());
            while v < val.len() && val[v].step <= p.step {
                if val[v].step == p.step {
                    vl = val[v].value.to_string();
                    va = val_acc
                        .get(v)
                        .map_or(String::new(), |q| q.value.to_string());
                }
                v += 1;
            }
            s += &format!("{},{},{},{second},{vl},{va}\n", p.step, p.images, p.value);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f32]) -> Series {
        let mut s = Series::default();
        for (i, &v) in values.iter().enumerate() {
            s.push(Point {
                step: i as u64 + 1,
                images: 8 * (i as u64 + 1),
                value: v,
            });
        }
        s
    }

    #[test]
    fn smoothing_is_debiased_and_incremental() {
        let mut s = series(&[1.0, 1.0, 1.0]);
        // Debiased: a constant curve stays constant from the first point on.
        assert_eq!(s.smoothed(0.9), &[1.0, 1.0, 1.0]);
        let mut s = series(&[0.0, 10.0]);
        // ema1 = 0, ema2 = 0.1 * 10 = 1, debias 1 - 0.81 = 0.19.
        let got = s.smoothed(0.9).to_vec();
        assert_eq!(got[0], 0.0);
        assert!((got[1] - 1.0 / 0.19).abs() < 1e-5, "{got:?}");
        // Extending gives what computing all at once gives.
        s.push(Point {
            step: 3,
            images: 24,
            value: 4.0,
        });
        let inc = s.smoothed(0.9).to_vec();
        let mut fresh = series(&[0.0, 10.0, 4.0]);
        assert_eq!(inc, fresh.smoothed(0.9));
        // Weight 0 is the raw curve.
        assert_eq!(fresh.smoothed(0.0), &[0.0, 10.0, 4.0]);
    }

    #[test]
    fn truncating_drops_later_points_and_smooths_the_rest_afresh() {
        let mut s = series(&[4.0, 2.0, 8.0, 6.0]);
        s.smoothed(0.5);
        s.truncate_after(2);
        assert_eq!(s.len(), 2);
        assert_eq!(s.last(), Some(2.0));
        // The smoothing forgets the dropped points: as if the curve had stopped at step 2.
        assert_eq!(s.smoothed(0.5), series(&[4.0, 2.0]).smoothed(0.5));
        s.truncate_after(0);
        assert!(s.is_empty());
    }

    #[test]
    fn decimation_bounds_the_points_and_keeps_both_ends() {
        let idx: Vec<usize> = decimate(1_000_000, 2000).collect();
        assert!(idx.len() <= 2001, "{}", idx.len());
        assert_eq!(idx.first(), Some(&0));
        assert_eq!(idx.last(), Some(&999_999));
        assert_eq!(decimate(5, 2000).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(decimate(0, 10).count(), 0);
    }

    #[test]
    fn csv_has_a_row_per_step_and_validation_where_measured() {
        let h = History {
            train_loss: series(&[2.0, 1.5, 1.0]),
            train_acc: series(&[0.1, 0.2, 0.3]),
            val_loss: {
                let mut s = Series::default();
                s.push(Point {
                    step: 2,
                    images: 16,
                    value: 1.25,
                });
                s
            },
            val_acc: {
                let mut s = Series::default();
                s.push(Point {
                    step: 2,
                    images: 16,
                    value: 0.5,
                });
                s
            },
        };
        let csv = h.to_csv("train_loss", "train_acc");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "step,images,train_loss,train_acc,val_loss,val_acc"
        );
        assert_eq!(lines[1], "1,8,2,0.1,,");
        assert_eq!(lines[2], "2,16,1.5,0.2,1.25,0.5");
        assert_eq!(lines.len(), 4);
    }
}
