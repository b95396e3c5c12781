//! The optional `#[tool]` attribute of `cortex-backend`.
//!
//! It only saves typing: everything it does is also
//! `Tool::new(name, scope, description, handler)` plus builder calls.
//!
//! ```ignore
//! /// Search the accounts the caller may see.
//! #[tool(scope = "mcp:crm:read", read_only)]
//! async fn search_accounts(ctx: Ctx<Crm>, args: SearchAccounts) -> Result<Accounts, ToolError> { ... }
//!
//! Backend::builder("crm").state(crm).tool(search_accounts)
//! ```
//!
//! The function keeps its body under a hidden name; `search_accounts`
//! becomes a unit value that converts into a `Tool<Crm>`.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{
    Expr, ExprLit, FnArg, GenericArgument, ItemFn, Lit, LitBool, LitStr, Meta, PathArguments, Type,
    parse_macro_input, spanned::Spanned,
};

#[derive(Default)]
struct Args {
    scope: Option<LitStr>,
    name: Option<LitStr>,
    description: Option<LitStr>,
    title: Option<LitStr>,
    version: Option<LitStr>,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: Option<LitBool>,
}

/// Declares a tool from an async function. See the crate docs.
///
/// Arguments: `scope = "mcp:<domain>:<action>"` (required), and optionally
/// `name = "..."`, `description = "..."` (default: the doc comment),
/// `title = "..."`, `version = "..."`, `read_only`, `destructive`,
/// `idempotent`, `open_world = true|false`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        let path = &meta.path;
        if path.is_ident("scope") {
            args.scope = Some(meta.value()?.parse()?);
        } else if path.is_ident("name") {
            args.name = Some(meta.value()?.parse()?);
        } else if path.is_ident("description") {
            args.description = Some(meta.value()?.parse()?);
        } else if path.is_ident("title") {
            args.title = Some(meta.value()?.parse()?);
        } else if path.is_ident("version") {
            args.version = Some(meta.value()?.parse()?);
        } else if path.is_ident("read_only") {
            args.read_only = true;
        } else if path.is_ident("destructive") {
            args.destructive = true;
        } else if path.is_ident("idempotent") {
            args.idempotent = true;
        } else if path.is_ident("open_world") {
            args.open_world = Some(meta.value()?.parse()?);
        } else {
            return Err(meta.error(
                "unknown #[tool] argument; expected scope, name, description, title, version, \
                 read_only, destructive, idempotent or open_world",
            ));
        }
        Ok(())
    });
    parse_macro_input!(attr with parser);
    let func = parse_macro_input!(item as ItemFn);
    match expand(args, func) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn doc_comment(func: &ItemFn) -> String {
    let mut lines = Vec::new();
    for attr in &func.attrs {
        if let Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
        {
            lines.push(s.value().trim().to_string());
        }
    }
    lines.join("\n").trim().to_string()
}

fn state_type(func: &ItemFn) -> syn::Result<Type> {
    let err = || {
        syn::Error::new(
            func.sig.inputs.span(),
            "a #[tool] function takes `ctx: Ctx<S>` then one argument struct: \
             `async fn name(ctx: Ctx<S>, args: Args) -> Result<R, ToolError>`",
        )
    };
    if func.sig.inputs.len() != 2 || func.sig.asyncness.is_none() {
        return Err(err());
    }
    let Some(FnArg::Typed(first)) = func.sig.inputs.first() else {
        return Err(err());
    };
    let Type::Path(path) = &*first.ty else {
        return Err(err());
    };
    let last = path.path.segments.last().ok_or_else(err)?;
    if last.ident != "Ctx" {
        return Err(err());
    }
    let PathArguments::AngleBracketed(generic) = &last.arguments else {
        return Err(err());
    };
    match generic.args.first() {
        Some(GenericArgument::Type(t)) => Ok(t.clone()),
        _ => Err(err()),
    }
}

fn expand(args: Args, mut func: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let scope = args.scope.ok_or_else(|| {
        syn::Error::new(
            func.sig.ident.span(),
            "#[tool] needs `scope = \"mcp:<domain>:<action>\"`",
        )
    })?;
    let state = state_type(&func)?;
    let fn_name = func.sig.ident.clone();
    let name = args.name.map_or_else(|| fn_name.to_string(), |n| n.value());
    let description = match args.description {
        Some(d) => d.value(),
        None => doc_comment(&func),
    };
    if description.is_empty() {
        return Err(syn::Error::new(
            fn_name.span(),
            "a #[tool] needs a description: write a doc comment (///) or `description = \"...\"`",
        ));
    }
    if !generics_empty(&func) {
        return Err(syn::Error::new(
            func.sig.generics.span(),
            "a #[tool] function cannot be generic; name the state type in `Ctx<S>`",
        ));
    }
    let vis = func.vis.clone();
    let hidden = format_ident!("__cortex_tool_{}", fn_name);
    func.sig.ident = hidden.clone();
    let doc_attrs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    func.attrs.retain(|a| !a.path().is_ident("doc"));
    let mut chain = proc_macro2::TokenStream::new();
    if let Some(t) = args.title {
        chain.extend(quote!(.title(#t)));
    }
    if let Some(v) = args.version {
        chain.extend(quote!(.version(#v)));
    }
    if args.read_only {
        chain.extend(quote!(.read_only()));
    }
    if args.destructive {
        chain.extend(quote!(.destructive()));
    }
    if args.idempotent {
        chain.extend(quote!(.idempotent()));
    }
    if let Some(o) = args.open_world {
        chain.extend(quote!(.open_world(#o)));
    }
    Ok(quote! {
        #[doc(hidden)]
        #func

        #(#doc_attrs)*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy)]
        #vis struct #fn_name;

        impl ::core::convert::From<#fn_name> for ::cortex_backend::Tool<#state> {
            fn from(_: #fn_name) -> Self {
                ::cortex_backend::Tool::new(#name, #scope, #description, #hidden) #chain
            }
        }
    })
}

fn generics_empty(func: &ItemFn) -> bool {
    func.sig.generics.params.is_empty()
}
