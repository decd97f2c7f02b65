# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cortex_global_optspecs
    string join \n h/help V/version
end

function __fish_cortex_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cortex_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cortex_using_subcommand
    set -l cmd (__fish_cortex_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cortex -n "__fish_cortex_needs_command" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_needs_command" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "deploy" -d 'create or update apis from a cortex.yaml'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "get" -d 'get information about apis or jobs'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "logs" -d 'stream logs from an api (on a terminal; piped, print them and exit unless -f)'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "delete" -d 'delete an api or stop a job'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "wait" -d 'wait until an api is live or a job has ended (exit 1 if it fails or times out)'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "env" -d 'manage cli environments (which cortex server to talk to)'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "server" -d 'run the cortex server in the foreground, or manage the local one'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "users" -d 'manage the users of a server (admins)'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "teams" -d 'manage teams and their members'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "tokens" -d 'create, list and revoke tokens'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "access" -d 'set who may use an api: private, protected (a team) or public'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "predict" -d 'make a prediction: post a json file to an api and print its answer'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "refresh" -d 'restart every replica of an api with a rolling update (no downtime)'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "completion" -d 'generate shell completion scripts'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "version" -d 'print the cli and server versions'
complete -c cortex -n "__fish_cortex_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -l timeout -d 'with --wait: how long to wait, e.g. 90s, 10m, 1h' -r
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -s o -l output -d 'output format (with --wait: the `cortex get API -o json` documents, at the end)' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -s f -l force -d 'override the in-progress api update'
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -s y -l yes -d 'skip prompts'
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -l wait -d 'then wait until every api of the deploy is live (exit 1 as soon as one fails)'
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand deploy" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand get" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand get" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand get" -s w -l watch -d 're-run the command every 2 seconds'
complete -c cortex -n "__fish_cortex_using_subcommand get" -l failed -d 'with a job id: list every batch that failed for good, not only the first 10'
complete -c cortex -n "__fish_cortex_using_subcommand get" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand get" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand logs" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand logs" -l tail -d 'only the last N lines' -r
complete -c cortex -n "__fish_cortex_using_subcommand logs" -s o -l output -d 'output format (json: one `{"line": ...}` document per log line)' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand logs" -s f -l follow -d 'keep streaming new lines (the default on a terminal)'
complete -c cortex -n "__fish_cortex_using_subcommand logs" -l no-follow -d 'print the lines there are and exit (the default when stdout is not a terminal)'
complete -c cortex -n "__fish_cortex_using_subcommand logs" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand logs" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand delete" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand delete" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand delete" -s f -l force -d 'delete without confirmation, even an api that a traffic splitter uses'
complete -c cortex -n "__fish_cortex_using_subcommand delete" -s y -l yes -d 'skip prompts'
complete -c cortex -n "__fish_cortex_using_subcommand delete" -s c -l keep-cache -d 'keep the api\'s uploaded project on the server for an hour, so deploying it again uploads nothing'
complete -c cortex -n "__fish_cortex_using_subcommand delete" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand delete" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand wait" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand wait" -l timeout -d 'how long to wait, e.g. 90s, 10m, 1h' -r
complete -c cortex -n "__fish_cortex_using_subcommand wait" -s o -l output -d 'output format (json, yaml: the `cortex get API [JOB_ID] -o json` document, at the end)' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand wait" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand wait" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -f -a "configure" -d 'add or update an environment (a remote cortex server)'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -f -a "list" -d 'list the configured environments'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -f -a "default" -d 'set (or print) the default environment'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -f -a "delete" -d 'delete an environment\'s configuration'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -f -a "token" -d 'print an environment\'s token (for scripts and curl)'
complete -c cortex -n "__fish_cortex_using_subcommand env; and not __fish_seen_subcommand_from configure list default delete token help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from configure" -l endpoint -d 'the server\'s base url, e.g. https://cortex.example.com' -r
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from configure" -l token -d 'the token to authenticate with' -r
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from configure" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from configure" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from list" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from default" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from default" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from token" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from token" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from help" -f -a "configure" -d 'add or update an environment (a remote cortex server)'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from help" -f -a "list" -d 'list the configured environments'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from help" -f -a "default" -d 'set (or print) the default environment'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from help" -f -a "delete" -d 'delete an environment\'s configuration'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from help" -f -a "token" -d 'print an environment\'s token (for scripts and curl)'
complete -c cortex -n "__fish_cortex_using_subcommand env; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l listen -d 'address to listen on' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l data-dir -d 'where the server keeps its database, bundles and logs (default: <config dir>/local, the local environment\'s server)' -r -F
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l min-free-disk-mb -d 'refuse deploys (507) while the data directory\'s disk has less free space than this (MiB)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l log-tail-lines -d 'lines of stdout and of stderr per replica that `GET /api/v2/deploy/{id}/logs` returns' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l data-root -d 'let batch jobs read `delimited_files` from this directory (paths outside it are refused)' -r -F
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l allow-fetch -d 'let batch jobs fetch `delimited_files` URLs from this network (CIDR) or host name too, although it is loopback, private or otherwise special (repeatable)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l max-connections -d 'open client connections at most; more wait to be accepted (default: half the open-file limit, which the server raises to its hard limit)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l header-read-timeout -d 'close a connection that has not sent a request\'s headers this long after it opened or after its previous answer (seconds)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l idle-timeout -d 'close a keep-alive connection that sends nothing this long after its last answer (seconds)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l replica-idle-timeout -d 'close a pooled connection from the gateway to a replica after this long unused (seconds)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l max-buffered-bodies-mb -d 'memory that prediction bodies sent without a Content-Length (read whole before they go to a replica) may use together; past it they are refused with 503 (MiB)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l log-max-mb -d 'cap each replica log file at this size (MiB); past it the file is rotated, and one rotated generation is kept' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l max-unpacked-mb -d 'refuse bundles (422) that unpack to more than this (MiB)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l max-bundle-files -d 'refuse bundles (422) that hold more files than this' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l max-batch-workers -d 'batch workers that may run at once across all jobs; the others wait as pending' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l spare-interpreters -d 'python interpreters kept started, with the runtime imported, for python replicas to start from (each becomes one replica); 0 starts every replica anew' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l sandbox -d 'what replicas may reach: standard (everything but the server\'s files and other apis\'), strict (system paths, their own files and --replica-path directories only), or off' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l replica-path -d 'a directory every replica may read (or read and write, with :rw) in strict mode (repeatable)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l replica-user -d 'the unprivileged user replicas run as when the server runs as root [default: nobody]' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l max-replica-pids -d 'processes and threads each run of a replica, batch worker or preparation may have (a fork or thread start past it fails); 0: no limit. Needs the pids cgroup controller' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l engine -d 'what runs replicas and batch workers: local (child processes of the server) or ray (actors of the Ray cluster at --ray-address)' -r -f -a "local\t''
ray\t''"
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l ray-address -d 'the Ray cluster\'s dashboard address, e.g. http://HEAD:8265 (with --engine ray)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l ray-token-file -d 'a file holding the Ray cluster\'s token (its nodes\' RAY_AUTH_TOKEN)' -r -F
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l ray-listen -d 'where the server listens for the Ray drivers and the nodes\' bundle downloads [default: the --listen address, any free port]' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l ray-python -d 'the python on the Ray nodes that runs cortex\'s driver (it must import ray)' -r
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l port-fallback -d 'if the port is taken, listen on a free one instead'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l require-tokens -d 'a token on every route, also when listening on loopback only (where predictions, jobs and /metrics otherwise take callers without one): for a server behind a reverse proxy, or on a machine other people use'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -l allow-unsandboxed-replicas -d 'listen beyond loopback even when replicas cannot be sandboxed (no Landlock, or --sandbox off)'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -f -a "status" -d 'show whether the local server is running'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -f -a "stop" -d 'stop the local server'
complete -c cortex -n "__fish_cortex_using_subcommand server; and not __fish_seen_subcommand_from status stop help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand server; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand server; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand server; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand server; and __fish_seen_subcommand_from stop" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "status" -d 'show whether the local server is running'
complete -c cortex -n "__fish_cortex_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "stop" -d 'stop the local server'
complete -c cortex -n "__fish_cortex_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand users; and not __fish_seen_subcommand_from create list delete help" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand users; and not __fish_seen_subcommand_from create list delete help" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand users; and not __fish_seen_subcommand_from create list delete help" -f -a "create" -d 'create a user and print their first token'
complete -c cortex -n "__fish_cortex_using_subcommand users; and not __fish_seen_subcommand_from create list delete help" -f -a "list" -d 'list the users (admins only)'
complete -c cortex -n "__fish_cortex_using_subcommand users; and not __fish_seen_subcommand_from create list delete help" -f -a "delete" -d 'delete a user; their apis become yours'
complete -c cortex -n "__fish_cortex_using_subcommand users; and not __fish_seen_subcommand_from create list delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from create" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from create" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from create" -l admin -d 'a global admin may do everything'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from list" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from list" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from delete" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from delete" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "create" -d 'create a user and print their first token'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "list" -d 'list the users (admins only)'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "delete" -d 'delete a user; their apis become yours'
complete -c cortex -n "__fish_cortex_using_subcommand users; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -f -a "create" -d 'create a team (admins only)'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -f -a "list" -d 'list the teams you can see, with their members'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -f -a "delete" -d 'delete a team; its protected apis become private'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -f -a "add" -d 'add a user to a team (or change whether they are its admin)'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -f -a "remove" -d 'remove a user from a team'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and not __fish_seen_subcommand_from create list delete add remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from create" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from create" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from list" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from list" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from delete" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from delete" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from add" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from add" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from add" -l admin -d 'a team admin manages the team and owns its protected apis'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from remove" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from remove" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "create" -d 'create a team (admins only)'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "list" -d 'list the teams you can see, with their members'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "delete" -d 'delete a team; its protected apis become private'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "add" -d 'add a user to a team (or change whether they are its admin)'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "remove" -d 'remove a user from a team'
complete -c cortex -n "__fish_cortex_using_subcommand teams; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and not __fish_seen_subcommand_from create list revoke help" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and not __fish_seen_subcommand_from create list revoke help" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and not __fish_seen_subcommand_from create list revoke help" -f -a "create" -d 'create a token (printed once; only its hash is stored)'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and not __fish_seen_subcommand_from create list revoke help" -f -a "list" -d 'list your tokens (an admin sees everyone\'s)'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and not __fish_seen_subcommand_from create list revoke help" -f -a "revoke" -d 'revoke a token by the id `cortex tokens list` shows'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and not __fish_seen_subcommand_from create list revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -l name -d 'a name to recognise it by in `cortex tokens list`' -r
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -l expires-in -d 'when it expires, e.g. 1h or 720h (default: never)' -r
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -l user -d 'the user it is for (admins only; default: you)' -r
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -l api -d 'scope it to one api: it works on that api alone' -r
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from list" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from list" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "create" -d 'create a token (printed once; only its hash is stored)'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "list" -d 'list your tokens (an admin sees everyone\'s)'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'revoke a token by the id `cortex tokens list` shows'
complete -c cortex -n "__fish_cortex_using_subcommand tokens; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand access" -l access -d 'who besides its owner may use it: private, protected (a team) or public (everyone)' -r -f -a "private\t''
protected\t''
public\t''"
complete -c cortex -n "__fish_cortex_using_subcommand access" -l team -d 'the team of a protected api' -r
complete -c cortex -n "__fish_cortex_using_subcommand access" -l permission -d 'what the team (protected) or everyone (public) may do' -r -f -a "read\t''
write\t''"
complete -c cortex -n "__fish_cortex_using_subcommand access" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand access" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand access" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand access" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand predict" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand predict" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand predict" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand refresh" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand refresh" -s o -l output -d 'output format' -r -f -a "pretty\t''
json\t''
yaml\t''"
complete -c cortex -n "__fish_cortex_using_subcommand refresh" -s f -l force -d 'override the in-progress api update'
complete -c cortex -n "__fish_cortex_using_subcommand refresh" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand refresh" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand completion" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand completion" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand version" -s e -l env -d 'environment to use (default: the configured default, usually "local")' -r
complete -c cortex -n "__fish_cortex_using_subcommand version" -s h -l help -d 'Print help'
complete -c cortex -n "__fish_cortex_using_subcommand version" -s V -l version -d 'Print version'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "deploy" -d 'create or update apis from a cortex.yaml'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "get" -d 'get information about apis or jobs'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "logs" -d 'stream logs from an api (on a terminal; piped, print them and exit unless -f)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "delete" -d 'delete an api or stop a job'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "wait" -d 'wait until an api is live or a job has ended (exit 1 if it fails or times out)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "env" -d 'manage cli environments (which cortex server to talk to)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "server" -d 'run the cortex server in the foreground, or manage the local one'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "users" -d 'manage the users of a server (admins)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "teams" -d 'manage teams and their members'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "tokens" -d 'create, list and revoke tokens'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "access" -d 'set who may use an api: private, protected (a team) or public'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "predict" -d 'make a prediction: post a json file to an api and print its answer'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "refresh" -d 'restart every replica of an api with a rolling update (no downtime)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "completion" -d 'generate shell completion scripts'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "version" -d 'print the cli and server versions'
complete -c cortex -n "__fish_cortex_using_subcommand help; and not __fish_seen_subcommand_from deploy get logs delete wait env server users teams tokens access predict refresh completion version help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from env" -f -a "configure" -d 'add or update an environment (a remote cortex server)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from env" -f -a "list" -d 'list the configured environments'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from env" -f -a "default" -d 'set (or print) the default environment'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from env" -f -a "delete" -d 'delete an environment\'s configuration'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from env" -f -a "token" -d 'print an environment\'s token (for scripts and curl)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "status" -d 'show whether the local server is running'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "stop" -d 'stop the local server'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from users" -f -a "create" -d 'create a user and print their first token'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from users" -f -a "list" -d 'list the users (admins only)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from users" -f -a "delete" -d 'delete a user; their apis become yours'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "create" -d 'create a team (admins only)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "list" -d 'list the teams you can see, with their members'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "delete" -d 'delete a team; its protected apis become private'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "add" -d 'add a user to a team (or change whether they are its admin)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from teams" -f -a "remove" -d 'remove a user from a team'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from tokens" -f -a "create" -d 'create a token (printed once; only its hash is stored)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from tokens" -f -a "list" -d 'list your tokens (an admin sees everyone\'s)'
complete -c cortex -n "__fish_cortex_using_subcommand help; and __fish_seen_subcommand_from tokens" -f -a "revoke" -d 'revoke a token by the id `cortex tokens list` shows'
