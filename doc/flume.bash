# bash completion for flume(1): commands, their options, database folders,
# and the names of a database's views for `view`, `drop`, `rebuild` and
# `verify` (read with `flume status DIR --json`, which works beside a
# writer). Installed as share/bash-completion/completions/flume.
_flume() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]}
  local commands="init append get cat status view drop rebuild verify backup shell remote"
  local common="--help --quiet --json"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$commands --help" -- "$cur"))
    return
  fi
  local opts=""
  case $cmd in
    init) opts="--codec" ;;
    append) opts="--batch --atomic" ;;
    get) opts="" ;;
    cat) opts="--gt --gte --lt --lte --reverse --limit --live --values" ;;
    status) opts="--view --no-wait --check --max-lag --watch --interval" ;;
    view) opts="--view --script" ;;
    drop) opts="" ;;
    rebuild) opts="--view" ;;
    verify) opts="--view" ;;
    backup) opts="--no-compact" ;;
    shell) opts="--readonly" ;;
    remote) opts="--urls --stream --replicas --codec --timeout" ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts $common" -- "$cur"))
    return
  fi
  if [ "${COMP_WORDS[COMP_CWORD-1]}" = "--codec" ]; then
    COMPREPLY=($(compgen -W "msgpack raw" -- "$cur"))
    return
  fi
  # remote's first word: its subcommand
  if [ "$cmd" = remote ] && [ "$COMP_CWORD" -eq 2 ]; then
    COMPREPLY=($(compgen -W "status init" -- "$cur"))
    return
  fi
  # the second word after the command: a view of the database DIR
  if [ "$COMP_CWORD" -eq 3 ]; then
    case $cmd in view|drop|rebuild|verify)
      local names
      names=$(flume status "${COMP_WORDS[2]}" --json 2>/dev/null |
        grep -o '"name":"[^"]*"' | sed 's/"name":"\(.*\)"/\1/')
      COMPREPLY=($(compgen -W "$names" -- "$cur"))
      return ;;
    esac
  fi
  COMPREPLY=($(compgen -d -- "$cur"))
}
complete -F _flume flume
