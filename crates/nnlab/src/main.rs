//! `nnlab`: train and watch convolutional networks on your own GPU.
//!
//! Without a subcommand it opens the app window; the subcommands (`info`, `train`, `eval`,
//! `classify`, `gan`, `bench`, `models`) run headless, implemented in `nnlab::cli`. Compiled for
//! wasm32 it is the web app (see `web/index.html` and `Trunk.toml`).

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
fn main() {
    web::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use anyhow::Result;
    use clap::{Parser, Subcommand};
    use nnlab::cli;

    #[derive(Parser)]
    #[command(
        name = "nnlab",
        version,
        about = "Train and watch CNNs on your own GPU (WebGPU)"
    )]
    struct Cli {
        /// No subcommand: open the app window.
        #[command(subcommand)]
        command: Option<Command>,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Show the GPU adapter nnlab uses and run a small kernel on it.
        Info,
        /// Train a classifier (progress bars, validation every epoch, metrics, checkpoints).
        Train(cli::TrainArgs),
        /// Accuracy and loss of a checkpoint on a dataset's validation/test split.
        Eval(cli::EvalArgs),
        /// Classify image files with a checkpoint (top-k with probabilities, or JSON).
        Classify(cli::ClassifyArgs),
        /// Why: Grad-CAM, input-gradient or SmoothGrad overlays of image files as PNG.
        Explain(cli::ExplainArgs),
        /// Train the 28x28 DCGAN, or write a PNG grid of samples from a checkpoint.
        Gan(cli::GanArgs),
        /// Measure training and inference images/s per model on random data.
        Bench(cli::BenchArgs),
        /// List the models: name, input, parameters, one line each.
        Models(cli::ModelsArgs),
        /// The study views' computations, headless, as JSON and PNG plots.
        Study(cli::StudyArgs),
        /// A model's layers: output shapes, parameters, multiply-accumulates, totals.
        Summary(cli::SummaryArgs),
        /// Export a checkpoint (or torchvision weights) as ONNX, for Netron and onnxruntime.
        Export(cli::ExportArgs),
    }

    /// Set once the app handed its runs on after a device loss: a panic of eframe's painter
    /// on the lost device is then expected, and the window loop recovers from it.
    static HANDED_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    pub fn main() {
        // `nnlab ... | head` closes stdout early: exit quietly, as a shell tool killed by
        // SIGPIPE would (status 141), instead of panicking in println!.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.to_string().contains("Broken pipe") {
                std::process::exit(141);
            }
            if HANDED_ON.load(std::sync::atomic::Ordering::SeqCst) {
                // eframe's painter fails on the lost device; the window loop goes on.
                eprintln!("nnlab: the window stopped drawing on the lost device: {info}");
                return;
            }
            default_hook(info);
        }));
        if let Err(e) = run(Cli::parse()) {
            eprintln!("nnlab: {e:#}");
            std::process::exit(1);
        }
    }

    fn run(cli: Cli) -> Result<()> {
        let Some(command) = cli.command else {
            return app_window();
        };
        match command {
            Command::Info => cli::info(),
            Command::Train(a) => cli::train(a),
            Command::Eval(a) => cli::eval(a),
            Command::Classify(a) => cli::classify(a),
            Command::Explain(a) => cli::explain_images(a),
            Command::Gan(a) => cli::gan(a),
            Command::Bench(a) => cli::bench(a),
            Command::Models(a) => cli::models(a),
            Command::Study(a) => cli::study(a),
            Command::Summary(a) => cli::summary(a),
            Command::Export(a) => cli::export(a),
        }
    }

    /// Opens the window. When the device is lost, the window closes and a new one, on a new
    /// device, continues the runs from their recovery points (eframe keeps its event loop
    /// between windows).
    fn app_window() -> Result<()> {
        use std::{cell::RefCell, rc::Rc};

        use nnlab::app::{NnlabApp, recovery::Recovery};

        let mut launch = Some(nnlab::app::Launch::from_env());
        let mut recovered: Option<Recovery> = None;
        loop {
            let handed_on: Rc<RefCell<Option<Recovery>>> = Rc::default();
            let slot = Rc::clone(&handed_on);
            let start = (recovered.take(), launch.take());
            let options = eframe::NativeOptions {
                renderer: eframe::Renderer::Wgpu,
                wgpu_options: nnlab::app::wgpu_configuration(),
                viewport: egui::ViewportBuilder::default()
                    .with_title("nnlab")
                    .with_inner_size([1280.0, 820.0])
                    .with_drag_and_drop(true),
                ..Default::default()
            };
            HANDED_ON.store(false, std::sync::atomic::Ordering::SeqCst);
            // egui-wgpu's painter panics on a lost device (egui#8452): once the runs were
            // handed on, that panic only ends this window.
            let shown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                eframe::run_native(
                    "nnlab",
                    options,
                    Box::new(move |cc| {
                        let app = match start {
                            (Some(r), _) => NnlabApp::restarted(cc, r),
                            (None, l) => NnlabApp::new(cc, l.unwrap_or_default()),
                        };
                        let ctx = cc.egui_ctx.clone();
                        Ok(Box::new(app.with_restart(Box::new(move |r| {
                            eprintln!(
                                "nnlab: the GPU device was lost; a new window continues the \
                                 runs on a new device"
                            );
                            *slot.borrow_mut() = Some(r);
                            HANDED_ON.store(true, std::sync::atomic::Ordering::SeqCst);
                            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                        }))))
                    }),
                )
            }));
            match (shown, handed_on.borrow_mut().take()) {
                (Ok(_), Some(r)) if r.exhausted() => anyhow::bail!("{}", r.give_up_message()),
                (Ok(_), Some(r)) => recovered = Some(r),
                (Ok(r), None) => {
                    return r.map_err(|e| anyhow::anyhow!("cannot open the window: {e}"));
                }
                // The painter failed on the lost device before a frame of the app noticed:
                // eframe's event loop does not run again after a panic.
                (Err(_), Some(_)) => anyhow::bail!(
                    "the GPU device was lost and the window's renderer failed with it: restart \
                     nnlab, then load the checkpoints you saved to continue the runs"
                ),
                (Err(panic), None) => std::panic::resume_unwind(panic),
            }
        }
    }
}
