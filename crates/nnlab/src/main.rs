//! `nnlab`: train and watch convolutional networks on your own GPU.
//!
//! Without a subcommand it opens the app window; the subcommands run headless. Compiled
//! for wasm32 it is the web app (see `web/index.html` and `Trunk.toml`).

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
fn main() {
    web::start();
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use nnlab::{bench, data, train};

    use anyhow::{Context, Result};
    use clap::{Parser, Subcommand};

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
        /// Train a classifier on a dataset directory, validating every epoch.
        Train {
            /// Model: mnist-cnn, resnet20, resnet14, googlenet-small, vgg11-small.
            #[arg(long, default_value = "mnist-cnn")]
            model: String,
            /// Directory with the four MNIST-format IDX files (raw or .gz).
            #[arg(long)]
            data: std::path::PathBuf,
            /// Passes over the training set.
            #[arg(long, default_value_t = 2)]
            epochs: usize,
            /// Images per step.
            #[arg(long, default_value_t = 64)]
            batch_size: usize,
            /// sgd or adam.
            #[arg(long, default_value = "sgd")]
            optimizer: String,
            /// Learning rate.
            #[arg(long, default_value_t = 0.01)]
            lr: f32,
            /// SGD momentum.
            #[arg(long, default_value_t = 0.5)]
            momentum: f32,
            /// L2 weight decay.
            #[arg(long, default_value_t = 0.0)]
            weight_decay: f32,
            /// Seed of initialisation, shuffling and dropout.
            #[arg(long, default_value_t = 1)]
            seed: u64,
            /// Train on the first N training images only (quick runs).
            #[arg(long)]
            limit: Option<usize>,
        },
        /// Measure training and inference images/s per model on random data.
        Bench {
            /// Models to measure (comma-separated): mnist-cnn, resnet14, dcgan.
            #[arg(
                long,
                value_delimiter = ',',
                default_value = "mnist-cnn,resnet14,dcgan"
            )]
            models: Vec<String>,
            /// Untimed steps first (pipeline compilation, pool warm-up).
            #[arg(long, default_value_t = 3)]
            warmup: usize,
            /// Timed steps.
            #[arg(long, default_value_t = 10)]
            steps: usize,
            /// Print JSON instead of a table.
            #[arg(long)]
            json: bool,
        },
    }

    pub fn main() {
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
            Command::Info => info(),
            Command::Train {
                model,
                data,
                epochs,
                batch_size,
                optimizer,
                lr,
                momentum,
                weight_decay,
                seed,
                limit,
            } => {
                let opt = train::OptSettings {
                    kind: optimizer,
                    lr,
                    momentum,
                    weight_decay,
                };
                train_cmd(&model, &data, epochs, batch_size, &opt, seed, limit)
            }
            Command::Bench {
                models,
                warmup,
                steps,
                json,
            } => bench_cmd(&models, warmup, steps, json),
        }
    }

    /// Opens the app (blocks until the window closes; the app itself never waits for the GPU).
    fn app_window() -> Result<()> {
        let options = eframe::NativeOptions {
            renderer: eframe::Renderer::Wgpu,
            wgpu_options: nnlab::app::wgpu_configuration(),
            viewport: egui::ViewportBuilder::default()
                .with_title("nnlab")
                .with_inner_size([1280.0, 820.0])
                .with_drag_and_drop(true),
            ..Default::default()
        };
        let launch = nnlab::app::Launch::from_env();
        eframe::run_native(
            "nnlab",
            options,
            Box::new(move |cc| Ok(Box::new(nnlab::app::NnlabApp::new(cc, launch)))),
        )
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
    }

    fn train_cmd(
        model: &str,
        dir: &std::path::Path,
        epochs: usize,
        batch: usize,
        opt: &train::OptSettings,
        seed: u64,
        limit: Option<usize>,
    ) -> Result<()> {
        anyhow::ensure!(
            batch > 0 && epochs > 0,
            "--batch-size and --epochs must be positive"
        );
        let (mut train_set, test_set) = data::load_mnist_dir(dir)?;
        if let Some(n) = limit {
            let per: usize = train_set.shape.iter().product();
            let n = n.min(train_set.len());
            train_set.labels.truncate(n);
            train_set.images.truncate(n * per);
        }
        let gpu = pollster::block_on(gpu_nn::Gpu::new()).context("no usable GPU")?;
        let net = train::build(&gpu, model, train_set.shape, train_set.classes, seed)?;
        println!(
            "{model}: {} parameters, {} training / {} test images, on {}",
            gpu_nn::nn::param_count(net.as_ref()),
            train_set.len(),
            test_set.len(),
            gpu.adapter_info().name
        );
        train::train(
            &gpu,
            net.as_ref(),
            &train_set,
            &test_set,
            epochs,
            batch,
            opt,
            seed,
            |e, s| {
                println!(
                    "epoch {}: loss {:.4}  train acc {:.2}%  test acc {:.2}%  {:.0} img/s",
                    e + 1,
                    s.loss,
                    100.0 * s.train_acc,
                    100.0 * s.test_acc,
                    s.img_s
                );
            },
        )
    }

    fn bench_cmd(models: &[String], warmup: usize, steps: usize, json: bool) -> Result<()> {
        anyhow::ensure!(steps > 0, "--steps must be at least 1");
        if let Some(m) = models.iter().find(|m| !bench::MODELS.contains(&m.as_str())) {
            anyhow::bail!("unknown model '{m}' (known: {})", bench::MODELS.join(", "));
        }
        let gpu = pollster::block_on(gpu_nn::Gpu::new()).context("no usable GPU")?;
        let a = gpu.adapter_info();
        let adapter = format!("{} ({:?})", a.name, a.backend);
        if !json {
            println!("adapter: {adapter}");
            println!(
                "{:<10} {:>6} {:>12} {:>6} {:>12}",
                "model", "batch", "train img/s", "batch", "infer img/s"
            );
        }
        let mut rows = Vec::new();
        for m in models {
            let r = bench::run_one(&gpu, m, warmup, steps)?;
            if !json {
                println!(
                    "{:<10} {:>6} {:>12.1} {:>6} {:>12.1}",
                    r.model, r.train_batch, r.train_img_s, r.infer_batch, r.infer_img_s
                );
            }
            rows.push(serde_json::json!({
                "model": r.model,
                "train_batch": r.train_batch,
                "train_img_per_s": r.train_img_s,
                "infer_batch": r.infer_batch,
                "infer_img_per_s": r.infer_img_s,
            }));
        }
        if json {
            let out = serde_json::json!({ "adapter": adapter, "steps": steps, "results": rows });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Ok(())
    }

    fn info() -> Result<()> {
        let gpu = pollster::block_on(gpu_nn::Gpu::new()).context("no usable GPU")?;
        let a = gpu.adapter_info();
        println!("adapter: {} ({:?}, {:?})", a.name, a.backend, a.device_type);
        println!("driver:  {} {}", a.driver, a.driver_info);
        println!(
            "max storage binding: {} MiB",
            gpu.max_binding_bytes() / (1024 * 1024)
        );
        let x = gpu_nn::Tensor::from_slice(&gpu, &[-1.0, 2.0, -3.0, 4.0], &[4])?;
        let y = x.relu()?.sum()?.item_blocking()?;
        anyhow::ensure!(y == 6.0, "self-test: relu-sum gave {y}, expected 6");
        println!("self-test: ok (relu + sum on the GPU)");
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}
