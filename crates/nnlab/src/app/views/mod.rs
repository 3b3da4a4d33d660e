//! The app's views, one module each, each with its own state; they read (and drive) the
//! lab. The runs panel is always on the left; the others are tabs.

pub mod classify;
pub mod confusion;
pub mod curves;
pub mod features;
pub mod folder;
pub mod gan;
pub mod graph;
pub mod runs;
pub mod saliency;
pub mod study;

pub use classify::ClassifyView;
pub use confusion::ConfusionView;
pub use curves::CurvesView;
pub use features::FeaturesView;
pub use gan::GanView;
pub use runs::RunsPanel;

/// The tabs of the central area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// Every run's curves, with the selected run's feature maps beside them.
    Curves,
    /// The selected run's feature maps, full size.
    Features,
    /// The selected GAN run's samples.
    Gan,
    /// A dropped image, classified.
    Classify,
    /// The selected run's confusion matrix and its images.
    Mistakes,
    /// The selected run's model as a graph.
    Model,
    /// Why residual and inception networks work: the study views.
    Study,
}

impl Tab {
    /// Looks a tab up by the name the page URL and `NNLAB_TAB` use.
    pub fn from_name(name: &str) -> Option<Tab> {
        match name {
            "curves" | "train" => Some(Tab::Curves),
            "features" => Some(Tab::Features),
            "gan" => Some(Tab::Gan),
            "classify" => Some(Tab::Classify),
            "mistakes" | "confusion" => Some(Tab::Mistakes),
            "model" | "graph" => Some(Tab::Model),
            "study" => Some(Tab::Study),
            _ => None,
        }
    }
}

/// The (i) of a view: what is computed, what to look for, which figure it reproduces.
pub fn info(ui: &mut egui::Ui, id: &str, text: &str) {
    egui::CollapsingHeader::new("(i) What this shows")
        .id_salt(id)
        .default_open(true)
        .show(ui, |ui| {
            ui.label(egui::RichText::new(text).small());
        });
}
