//! Generates the client with progenitor from the committed document (or from the file named by
//! PORTCULLIS_OPENAPI, to try a patched copy) into $OUT_DIR/codegen.rs.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=PORTCULLIS_OPENAPI");
    let src = env::var("PORTCULLIS_OPENAPI").unwrap_or_else(|_| "../../openapi.json".to_owned());
    println!("cargo:rerun-if-changed={src}");
    let text = fs::read_to_string(&src).unwrap_or_else(|e| panic!("reading {src}: {e}"));
    let spec: openapiv3::OpenAPI =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {src}: {e}"));
    let mut generator = progenitor::Generator::default();
    let generated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        generator.generate_tokens(&spec)
    }));
    let tokens = match generated {
        Ok(Ok(tokens)) => tokens,
        Ok(Err(e)) => panic!("progenitor refused {src}: {e}"),
        Err(_) => panic!(
            "progenitor panicked on {src} (message above). `assertion failed: \
             response_types.len() <= 1` means an operation declares error responses with more \
             than one schema: progenitor needs one error schema per operation (its issues #344, #950)"
        ),
    };
    let ast = syn::parse2(tokens).expect("progenitor produced invalid Rust");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("codegen.rs");
    fs::write(&out, prettyplease::unparse(&ast)).unwrap();
}
