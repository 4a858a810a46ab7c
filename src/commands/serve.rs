pub(crate) fn run(_ctx: super::Ctx, _a: &crate::cli::ServeArgs) -> anyhow::Result<()> { Ok(()) }
