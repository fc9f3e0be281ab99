//! The `#[closeout::test]` attribute. Use it through `closeout`'s `macros` feature; its
//! documentation is on `closeout::test`, and what it expands to is a call of
//! `closeout::testing::run` (sync tests) or `closeout::testing::run_async` (async tests).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, ItemFn, Lit, Meta, Token, Type};

/// Makes a test of a function that may take the test's `closeout::Registry`; the full
/// documentation is on `closeout::test`.
///
/// ```
/// # #![allow(unused_imports)] // a doctest is not built with `--test`: the tests are left out
/// use closeout::{Registry, Resource};
///
/// #[closeout::test]
/// fn registers_a_file(registry: &Registry) {
///     registry.register(Resource::new("file", || ())).unwrap();
/// } // torn down here, then checked for leaks
/// # fn main() {}
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The attribute's arguments, checked.
struct Args {
    leaks: Option<(String, Span)>,
    leak_timeout_ms: Option<u64>,
    flavor: Option<(String, Span)>,
    worker_threads: Option<(u64, Span)>,
    heap: Option<syn::Path>,
    max_heap_growth: Option<(u64, Span)>,
}

fn parse_args(args: TokenStream2) -> syn::Result<Args> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut out = Args {
        leaks: None,
        leak_timeout_ms: None,
        flavor: None,
        worker_threads: None,
        heap: None,
        max_heap_growth: None,
    };
    for meta in metas {
        let Meta::NameValue(nv) = &meta else {
            return Err(syn::Error::new(
                meta.span(),
                "expected `name = value`: leaks = \"tracked\" | \"os\" | \"off\", leak_timeout_ms = N, \
                 flavor = \"current_thread\" | \"multi_thread\", worker_threads = N",
            ));
        };
        let name = nv.path.get_ident().map(ToString::to_string).unwrap_or_default();
        let seen = match name.as_str() {
            "leaks" => out.leaks.replace((string(&nv.value, "leaks")?, nv.value.span())).is_some(),
            "leak_timeout_ms" => {
                out.leak_timeout_ms.replace(integer(&nv.value, "leak_timeout_ms")?).is_some()
            }
            "flavor" => out.flavor.replace((string(&nv.value, "flavor")?, nv.value.span())).is_some(),
            "heap" => match &nv.value {
                Expr::Path(p) => out.heap.replace(p.path.clone()).is_some(),
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "`heap` takes the path of a static `closeout::alloc::Counting` (e.g. `heap = HEAP`)",
                    ));
                }
            },
            "max_heap_growth" => out
                .max_heap_growth
                .replace((integer(&nv.value, "max_heap_growth")?, nv.value.span()))
                .is_some(),
            "worker_threads" => {
                out.worker_threads.replace((integer(&nv.value, "worker_threads")?, nv.value.span())).is_some()
            }
            _ => {
                return Err(syn::Error::new(
                    nv.path.span(),
                    format!(
                        "unknown argument `{}`: #[closeout::test] takes leaks, leak_timeout_ms, flavor, worker_threads, heap and max_heap_growth",
                        path_text(&nv.path)
                    ),
                ));
            }
        };
        if seen {
            return Err(syn::Error::new(nv.path.span(), format!("`{name}` is given twice")));
        }
    }
    if let Some((leaks, span)) = &out.leaks
        && !matches!(leaks.as_str(), "tracked" | "os" | "off")
    {
        return Err(syn::Error::new(
            *span,
            format!("leaks = \"{leaks}\": expected \"tracked\", \"os\" or \"off\""),
        ));
    }
    if let Some((flavor, span)) = &out.flavor
        && !matches!(flavor.as_str(), "current_thread" | "multi_thread")
    {
        return Err(syn::Error::new(
            *span,
            format!("flavor = \"{flavor}\": expected \"current_thread\" or \"multi_thread\""),
        ));
    }
    if let Some((n, span)) = out.worker_threads {
        if n == 0 {
            return Err(syn::Error::new(span, "worker_threads = 0: a runtime needs at least one worker"));
        }
        if out.flavor.as_ref().is_none_or(|(f, _)| f != "multi_thread") {
            return Err(syn::Error::new(span, "worker_threads needs flavor = \"multi_thread\""));
        }
    }
    if out.heap.is_some() != out.max_heap_growth.is_some() {
        let span = out.max_heap_growth.map_or(Span::call_site(), |(_, s)| s);
        return Err(syn::Error::new(
            span,
            "`heap` and `max_heap_growth` go together: the counter and its bound",
        ));
    }
    if out.leaks.as_ref().is_some_and(|(l, _)| l == "off") && out.heap.is_some() {
        return Err(syn::Error::new(
            Span::call_site(),
            "leaks = \"off\" checks no heap: drop `heap` or the `leaks`",
        ));
    }
    Ok(out)
}

fn path_text(path: &syn::Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}

fn string(value: &Expr, name: &str) -> syn::Result<String> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Ok(s.value()),
        other => Err(syn::Error::new(other.span(), format!("`{name}` takes a string literal"))),
    }
}

fn integer(value: &Expr, name: &str) -> syn::Result<u64> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Int(n), .. }) => n.base10_parse::<u64>(),
        other => Err(syn::Error::new(other.span(), format!("`{name}` takes an integer literal"))),
    }
}

fn expand(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = parse_args(args)?;
    let function: ItemFn = syn::parse2(item)?;
    let sig = &function.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(sig.generics.span(), "a test cannot be generic"));
    }
    for (what, present, span) in [
        ("const", sig.constness.is_some(), sig.constness.span()),
        ("unsafe", sig.unsafety.is_some(), sig.unsafety.span()),
        ("extern", sig.abi.is_some(), sig.abi.span()),
        ("variadic", sig.variadic.is_some(), sig.variadic.span()),
    ] {
        if present {
            return Err(syn::Error::new(span, format!("a test cannot be {what}")));
        }
    }
    if let Some(attr) = function.attrs.iter().find(|a| {
        let path = a.path();
        path.is_ident("test") || path.segments.last().is_some_and(|s| s.ident == "test")
    }) {
        return Err(syn::Error::new(
            attr.span(),
            "#[closeout::test] already makes this function a test: remove this attribute",
        ));
    }
    let is_async = sig.asyncness.is_some();
    if !is_async && let Some((_, span)) = &args.flavor {
        return Err(syn::Error::new(*span, "flavor applies to async tests only"));
    }
    if sig.inputs.len() > 1 {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "a closeout test takes at most one argument: the test's registry (`registry: &Registry`, or `Registry` by value)",
        ));
    }
    let argument = match sig.inputs.first() {
        None => None,
        Some(FnArg::Receiver(r)) => return Err(syn::Error::new(r.span(), "a test cannot take `self`")),
        Some(FnArg::Typed(typed)) => Some(typed),
    };
    let registry = quote!(__closeout_registry);
    let (closure_param, call_arg) = match (argument, is_async) {
        (None, false) => (quote!(_: &::closeout::Registry), quote!()),
        (None, true) => (quote!(_: ::closeout::Registry), quote!()),
        (Some(arg), false) => match &*arg.ty {
            Type::Reference(_) => {
                (quote!(#registry: &::closeout::Registry), quote_spanned!(arg.ty.span()=> #registry))
            }
            _ => (
                quote!(#registry: &::closeout::Registry),
                quote_spanned!(arg.ty.span()=> ::core::clone::Clone::clone(#registry)),
            ),
        },
        (Some(arg), true) => match &*arg.ty {
            Type::Reference(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "an async test takes the registry by value (`registry: Registry`, a handle): its body outlives a borrow",
                ));
            }
            _ => (quote!(#registry: ::closeout::Registry), quote_spanned!(arg.ty.span()=> #registry)),
        },
    };

    let mut options = quote!(::closeout::testing::Options::new());
    if let Some((leaks, _)) = &args.leaks {
        let variant = match leaks.as_str() {
            "os" => quote!(Os),
            "off" => quote!(Off),
            _ => quote!(Tracked),
        };
        options = quote!(#options.leaks(::closeout::testing::LeakScope::#variant));
    }
    if let Some(ms) = args.leak_timeout_ms {
        options = quote!(#options.leak_timeout(::core::time::Duration::from_millis(#ms)));
    }
    if let (Some(heap), Some((bound, _))) = (&args.heap, args.max_heap_growth) {
        options = quote!(#options.max_heap_growth(&#heap, #bound));
    }
    if args.flavor.as_ref().is_some_and(|(f, _)| f == "multi_thread") {
        let workers = match args.worker_threads {
            Some((n, _)) => {
                let n = n as usize;
                quote!(::core::num::NonZeroUsize::new(#n))
            }
            None => quote!(::core::option::Option::None),
        };
        options = quote!(#options.flavor(::closeout::testing::Flavor::MultiThread(#workers)));
    }

    let attrs = &function.attrs;
    let vis = &function.vis;
    let name = &sig.ident;
    let inputs = &sig.inputs;
    let output = &sig.output;
    let block = &function.block;
    let asyncness = &sig.asyncness;
    let runner = if is_async { quote!(run_async) } else { quote!(run) };
    // The signature is checked outside the test function too: `#[test]` items exist only in
    // `--test` builds, and a wrong argument or return type should not wait for one.
    let argument_type = match argument {
        Some(arg) => {
            let ty = &arg.ty;
            quote_spanned!(ty.span()=> #ty)
        }
        None => quote!(::closeout::Registry),
    };
    let output_type = match output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote_spanned!(ty.span()=> #ty),
    };
    Ok(quote! {
        const _: () = ::closeout::testing::__check_signature::<#argument_type, #output_type>();
        #(#attrs)*
        #[::core::prelude::v1::test]
        #vis fn #name() {
            #asyncness fn __closeout_test_body(#inputs) #output #block
            ::closeout::testing::#runner(#options, |#closure_param| __closeout_test_body(#call_arg))
        }
    })
}
