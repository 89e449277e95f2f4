//! `tellify completions SHELL` and `tellify man`: shell completions and a roff man page,
//! generated from the very definition the parser uses ([`super::Cli::command`]), so neither
//! can drift from the flags that exist.

use std::process::ExitCode;

use clap::CommandFactory;

use super::output::print;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  tellify completions bash > ~/.local/share/bash-completion/completions/tellify
  tellify completions zsh > ~/.zfunc/_tellify
  tellify completions fish > ~/.config/fish/completions/tellify.fish")]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:
  tellify man > tellify.1 && man ./tellify.1")]
pub struct ManArgs {}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "tellify", &mut script);
    print(&String::from_utf8(script)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes one man page to stdout: the top-level page, then a section per subcommand
/// (and per subcommand of those) with its own usage and options.
pub fn man(_args: ManArgs) -> anyhow::Result<ExitCode> {
    print(&String::from_utf8(man_page()?)?)?;
    Ok(ExitCode::SUCCESS)
}

fn man_page() -> anyhow::Result<Vec<u8>> {
    let mut command = super::Cli::command();
    command.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    for subcommand in command.get_subcommands() {
        render_section(subcommand, "tellify", &mut page)?;
    }
    Ok(page)
}

/// A subcommand's description, usage and options as a section of the one page (its
/// parts as subsections), then its own subcommands the same way.
fn render_section(command: &clap::Command, parent: &str, page: &mut Vec<u8>) -> anyhow::Result<()> {
    if command.is_hide_set() || command.get_name() == "help" {
        return Ok(());
    }
    let path = format!("{parent} {}", command.get_name());
    page.extend_from_slice(format!(".SH \"{}\"\n", path.to_uppercase()).as_bytes());
    let man = clap_mangen::Man::new(command.clone().bin_name(&path));
    let mut parts = Vec::new();
    man.render_description_section(&mut parts)?;
    man.render_synopsis_section(&mut parts)?;
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(&mut parts)?;
    }
    for line in String::from_utf8(parts)?.lines() {
        // Each render starts with roff's apostrophe preamble; the page has it once.
        if line.starts_with(".ie \\n(.g") || line.starts_with(".el .ds Aq") {
            continue;
        }
        let line = match line.strip_prefix(".SH ") {
            Some(heading) => format!(".SS {heading}"),
            None => line.to_string(),
        };
        page.extend_from_slice(line.as_bytes());
        page.push(b'\n');
    }
    for subcommand in command.get_subcommands() {
        render_section(subcommand, &path, page)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_is_roff_and_names_every_subcommand() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        // roff's apostrophe preamble (`.ie`/`.el`), then the title.
        let first = page
            .lines()
            .find(|line| !line.starts_with(".ie ") && !line.starts_with(".el "))
            .unwrap();
        assert!(first.starts_with(".TH tellify"), "{first}");
        assert_eq!(page.matches(".ie \\n(.g").count(), 1, "one preamble");
        for name in [
            "TELLIFY SUBS",
            "TELLIFY USERS UPDATE",
            "TELLIFY AUDIT",
            "TELLIFY SERVE",
        ] {
            assert!(page.contains(name), "no section {name}");
        }
        assert!(
            page.contains("display\\-name"),
            "options of subcommands are shown"
        );
    }
}
