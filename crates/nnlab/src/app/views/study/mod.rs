//! Why residual and inception networks work: one view per published result, each on runs
//! of the lab, each with an ⓘ saying what is computed, what to look for and which figure it
//! reproduces.

pub mod branches;
pub mod degradation;
pub mod gradients;
pub mod landscape;
pub mod lesions;
pub mod response;

use anyhow::Result;
use egui::Color32;

pub use super::info;

use crate::app::lab::Lab;
use crate::app::pictures::Pictures;

/// The study views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudyTab {
    /// Plain vs residual nets of two depths, trained side by side.
    Degradation,
    /// Per-layer gradient norms.
    Gradients,
    /// Residual branch responses and block anatomy.
    Response,
    /// Test-time deletion of blocks.
    Lesions,
    /// The four branches of an Inception module.
    Branches,
    /// The loss around the trained weights.
    Landscape,
}

impl StudyTab {
    /// Every view, in menu order, with its label.
    pub const ALL: [(StudyTab, &'static str); 6] = [
        (StudyTab::Degradation, "Degradation race"),
        (StudyTab::Gradients, "Gradient flow"),
        (StudyTab::Response, "Residual response"),
        (StudyTab::Lesions, "Lesion board"),
        (StudyTab::Branches, "Inception branches"),
        (StudyTab::Landscape, "Loss landscape"),
    ];

    /// Looks a view up by its URL / `NNLAB_STUDY` name.
    pub fn from_name(name: &str) -> Option<StudyTab> {
        match name {
            "degradation" => Some(StudyTab::Degradation),
            "gradients" => Some(StudyTab::Gradients),
            "lesions" => Some(StudyTab::Lesions),
            "response" => Some(StudyTab::Response),
            "branches" => Some(StudyTab::Branches),
            "landscape" => Some(StudyTab::Landscape),
            _ => None,
        }
    }
}

/// The study views' state.
pub struct StudyViews {
    /// The open view.
    pub tab: StudyTab,
    /// The degradation race.
    pub degradation: degradation::DegradationView,
    /// Gradient flow.
    pub gradients: gradients::GradientsView,
    /// The lesion board.
    pub lesions: lesions::LesionsView,
    /// The Inception branch lens.
    pub branches: branches::BranchesView,
    /// Loss landscapes.
    pub landscape: landscape::LandscapeView,
    /// Residual responses and block anatomy.
    pub response: response::ResponseView,
}

impl StudyViews {
    /// The views, the degradation race open; `cpu`: the device is a CPU driver (the race
    /// then starts thinner).
    pub fn new(cpu: bool) -> Self {
        Self {
            tab: StudyTab::Degradation,
            degradation: degradation::DegradationView::new(cpu),
            gradients: gradients::GradientsView::default(),
            lesions: lesions::LesionsView::default(),
            branches: branches::BranchesView::default(),
            landscape: landscape::LandscapeView::new(cpu),
            response: response::ResponseView::default(),
        }
    }

    /// True while a study computes (its results are polled every frame).
    pub fn busy(&self) -> bool {
        self.lesions.busy() || self.landscape.busy()
    }

    /// Collects and submits the open view's work (never waits).
    pub fn advance(&mut self, lab: &mut Lab, selected: Option<u64>, now: f64) -> Result<()> {
        self.lesions.advance(lab)?;
        self.degradation.advance(lab);
        self.landscape.advance(lab)?;
        match self.tab {
            StudyTab::Branches => self.branches.advance(lab, selected, now)?,
            StudyTab::Response => self.response.advance(lab, selected)?,
            _ => {}
        }
        Ok(())
    }

    /// Draws the view chooser and the open view.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &mut Lab,
        selected: &mut Option<u64>,
        pics: &mut Pictures,
    ) {
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("Why it works:").strong());
            for (t, label) in StudyTab::ALL {
                ui.selectable_value(&mut self.tab, t, label);
            }
        });
        ui.separator();
        match self.tab {
            StudyTab::Degradation => self.degradation.ui(ui, lab, selected),
            StudyTab::Gradients => self.gradients.ui(ui, lab, selected),
            StudyTab::Lesions => self.lesions.ui(ui, lab),
            StudyTab::Branches => self.branches.ui(ui, lab, *selected, pics),
            StudyTab::Landscape => self.landscape.ui(ui, lab),
            StudyTab::Response => self.response.ui(ui, lab, *selected, pics),
        }
    }
}

/// A perceptual colour for `t` in [0, 1] (viridis, by its five anchor colours).
pub fn viridis(t: f32) -> Color32 {
    const ANCHORS: [[f32; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f32;
    let c = |k: usize| (ANCHORS[i][k] + (ANCHORS[i + 1][k] - ANCHORS[i][k]) * f) as u8;
    Color32::from_rgb(c(0), c(1), c(2))
}
