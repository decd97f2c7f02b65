
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'cortex' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'cortex'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'cortex' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('deploy', 'deploy', [CompletionResultType]::ParameterValue, 'create or update apis from a cortex.yaml')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'get information about apis or jobs')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'stream logs from an api (on a terminal; piped, print them and exit unless -f)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete an api or stop a job')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'wait until an api is live or a job has ended (exit 1 if it fails or times out)')
            [CompletionResult]::new('env', 'env', [CompletionResultType]::ParameterValue, 'manage cli environments (which cortex server to talk to)')
            [CompletionResult]::new('server', 'server', [CompletionResultType]::ParameterValue, 'run the cortex server in the foreground, or manage the local one')
            [CompletionResult]::new('users', 'users', [CompletionResultType]::ParameterValue, 'manage the users of a server (admins)')
            [CompletionResult]::new('teams', 'teams', [CompletionResultType]::ParameterValue, 'manage teams and their members')
            [CompletionResult]::new('tokens', 'tokens', [CompletionResultType]::ParameterValue, 'create, list and revoke tokens')
            [CompletionResult]::new('access', 'access', [CompletionResultType]::ParameterValue, 'set who may use an api: private, protected (a team) or public')
            [CompletionResult]::new('predict', 'predict', [CompletionResultType]::ParameterValue, 'make a prediction: post a json file to an api and print its answer')
            [CompletionResult]::new('refresh', 'refresh', [CompletionResultType]::ParameterValue, 'restart every replica of an api with a rolling update (no downtime)')
            [CompletionResult]::new('completion', 'completion', [CompletionResultType]::ParameterValue, 'generate shell completion scripts')
            [CompletionResult]::new('version', 'version', [CompletionResultType]::ParameterValue, 'print the cli and server versions')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;deploy' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'with --wait: how long to wait, e.g. 90s, 10m, 1h')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format (with --wait: the `cortex get API -o json` documents, at the end)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format (with --wait: the `cortex get API -o json` documents, at the end)')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'override the in-progress api update')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'override the in-progress api update')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'skip prompts')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'skip prompts')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'then wait until every api of the deploy is live (exit 1 as soon as one fails)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;get' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 're-run the command every 2 seconds')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 're-run the command every 2 seconds')
            [CompletionResult]::new('--failed', '--failed', [CompletionResultType]::ParameterName, 'with a job id: list every batch that failed for good, not only the first 10')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;logs' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--tail', '--tail', [CompletionResultType]::ParameterName, 'only the last N lines')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format (json: one `{"line": ...}` document per log line)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format (json: one `{"line": ...}` document per log line)')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'keep streaming new lines (the default on a terminal)')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'keep streaming new lines (the default on a terminal)')
            [CompletionResult]::new('--no-follow', '--no-follow', [CompletionResultType]::ParameterName, 'print the lines there are and exit (the default when stdout is not a terminal)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;delete' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'delete without confirmation, even an api that a traffic splitter uses')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'delete without confirmation, even an api that a traffic splitter uses')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'skip prompts')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'skip prompts')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'keep the api''s uploaded project on the server for an hour, so deploying it again uploads nothing')
            [CompletionResult]::new('--keep-cache', '--keep-cache', [CompletionResultType]::ParameterName, 'keep the api''s uploaded project on the server for an hour, so deploying it again uploads nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;wait' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'how long to wait, e.g. 90s, 10m, 1h')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format (json, yaml: the `cortex get API [JOB_ID] -o json` document, at the end)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format (json, yaml: the `cortex get API [JOB_ID] -o json` document, at the end)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;env' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('configure', 'configure', [CompletionResultType]::ParameterValue, 'add or update an environment (a remote cortex server)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the configured environments')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'set (or print) the default environment')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete an environment''s configuration')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'print an environment''s token (for scripts and curl)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;env;configure' {
            [CompletionResult]::new('--endpoint', '--endpoint', [CompletionResultType]::ParameterName, 'the server''s base url, e.g. https://cortex.example.com')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'the token to authenticate with')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;env;list' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;env;default' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;env;delete' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;env;token' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;env;help' {
            [CompletionResult]::new('configure', 'configure', [CompletionResultType]::ParameterValue, 'add or update an environment (a remote cortex server)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the configured environments')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'set (or print) the default environment')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete an environment''s configuration')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'print an environment''s token (for scripts and curl)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;env;help;configure' {
            break
        }
        'cortex;env;help;list' {
            break
        }
        'cortex;env;help;default' {
            break
        }
        'cortex;env;help;delete' {
            break
        }
        'cortex;env;help;token' {
            break
        }
        'cortex;env;help;help' {
            break
        }
        'cortex;server' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'address to listen on')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'where the server keeps its database, bundles and logs (default: <config dir>/local, the local environment''s server)')
            [CompletionResult]::new('--min-free-disk-mb', '--min-free-disk-mb', [CompletionResultType]::ParameterName, 'refuse deploys (507) while the data directory''s disk has less free space than this (MiB)')
            [CompletionResult]::new('--log-tail-lines', '--log-tail-lines', [CompletionResultType]::ParameterName, 'lines of stdout and of stderr per replica that `GET /api/v2/deploy/{id}/logs` returns')
            [CompletionResult]::new('--data-root', '--data-root', [CompletionResultType]::ParameterName, 'let batch jobs read `delimited_files` from this directory (paths outside it are refused)')
            [CompletionResult]::new('--allow-fetch', '--allow-fetch', [CompletionResultType]::ParameterName, 'let batch jobs fetch `delimited_files` URLs from this network (CIDR) or host name too, although it is loopback, private or otherwise special (repeatable)')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'open client connections at most; more wait to be accepted (default: half the open-file limit, which the server raises to its hard limit)')
            [CompletionResult]::new('--header-read-timeout', '--header-read-timeout', [CompletionResultType]::ParameterName, 'close a connection that has not sent a request''s headers this long after it opened or after its previous answer (seconds)')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'close a keep-alive connection that sends nothing this long after its last answer (seconds)')
            [CompletionResult]::new('--replica-idle-timeout', '--replica-idle-timeout', [CompletionResultType]::ParameterName, 'close a pooled connection from the gateway to a replica after this long unused (seconds)')
            [CompletionResult]::new('--max-buffered-bodies-mb', '--max-buffered-bodies-mb', [CompletionResultType]::ParameterName, 'memory that prediction bodies sent without a Content-Length (read whole before they go to a replica) may use together; past it they are refused with 503 (MiB)')
            [CompletionResult]::new('--log-max-mb', '--log-max-mb', [CompletionResultType]::ParameterName, 'cap each replica log file at this size (MiB); past it the file is rotated, and one rotated generation is kept')
            [CompletionResult]::new('--max-unpacked-mb', '--max-unpacked-mb', [CompletionResultType]::ParameterName, 'refuse bundles (422) that unpack to more than this (MiB)')
            [CompletionResult]::new('--max-bundle-files', '--max-bundle-files', [CompletionResultType]::ParameterName, 'refuse bundles (422) that hold more files than this')
            [CompletionResult]::new('--max-batch-workers', '--max-batch-workers', [CompletionResultType]::ParameterName, 'batch workers that may run at once across all jobs; the others wait as pending')
            [CompletionResult]::new('--spare-interpreters', '--spare-interpreters', [CompletionResultType]::ParameterName, 'python interpreters kept started, with the runtime imported, for python replicas to start from (each becomes one replica); 0 starts every replica anew')
            [CompletionResult]::new('--sandbox', '--sandbox', [CompletionResultType]::ParameterName, 'what replicas may reach: standard (everything but the server''s files and other apis''), strict (system paths, their own files and --replica-path directories only), or off')
            [CompletionResult]::new('--replica-path', '--replica-path', [CompletionResultType]::ParameterName, 'a directory every replica may read (or read and write, with :rw) in strict mode (repeatable)')
            [CompletionResult]::new('--replica-user', '--replica-user', [CompletionResultType]::ParameterName, 'the unprivileged user replicas run as when the server runs as root [default: nobody]')
            [CompletionResult]::new('--max-replica-pids', '--max-replica-pids', [CompletionResultType]::ParameterName, 'processes and threads each run of a replica, batch worker or preparation may have (a fork or thread start past it fails); 0: no limit. Needs the pids cgroup controller')
            [CompletionResult]::new('--engine', '--engine', [CompletionResultType]::ParameterName, 'what runs replicas and batch workers: local (child processes of the server) or ray (actors of the Ray cluster at --ray-address)')
            [CompletionResult]::new('--ray-address', '--ray-address', [CompletionResultType]::ParameterName, 'the Ray cluster''s dashboard address, e.g. http://HEAD:8265 (with --engine ray)')
            [CompletionResult]::new('--ray-token-file', '--ray-token-file', [CompletionResultType]::ParameterName, 'a file holding the Ray cluster''s token (its nodes'' RAY_AUTH_TOKEN)')
            [CompletionResult]::new('--ray-listen', '--ray-listen', [CompletionResultType]::ParameterName, 'where the server listens for the Ray drivers and the nodes'' bundle downloads [default: the --listen address, any free port]')
            [CompletionResult]::new('--ray-python', '--ray-python', [CompletionResultType]::ParameterName, 'the python on the Ray nodes that runs cortex''s driver (it must import ray)')
            [CompletionResult]::new('--port-fallback', '--port-fallback', [CompletionResultType]::ParameterName, 'if the port is taken, listen on a free one instead')
            [CompletionResult]::new('--require-tokens', '--require-tokens', [CompletionResultType]::ParameterName, 'a token on every route, also when listening on loopback only (where predictions, jobs and /metrics otherwise take callers without one): for a server behind a reverse proxy, or on a machine other people use')
            [CompletionResult]::new('--allow-unsandboxed-replicas', '--allow-unsandboxed-replicas', [CompletionResultType]::ParameterName, 'listen beyond loopback even when replicas cannot be sandboxed (no Landlock, or --sandbox off)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'show whether the local server is running')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'stop the local server')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;server;status' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;server;stop' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;server;help' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'show whether the local server is running')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'stop the local server')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;server;help;status' {
            break
        }
        'cortex;server;help;stop' {
            break
        }
        'cortex;server;help;help' {
            break
        }
        'cortex;users' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a user and print their first token')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the users (admins only)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete a user; their apis become yours')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;users;create' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--admin', '--admin', [CompletionResultType]::ParameterName, 'a global admin may do everything')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;users;list' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;users;delete' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;users;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a user and print their first token')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the users (admins only)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete a user; their apis become yours')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;users;help;create' {
            break
        }
        'cortex;users;help;list' {
            break
        }
        'cortex;users;help;delete' {
            break
        }
        'cortex;users;help;help' {
            break
        }
        'cortex;teams' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a team (admins only)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the teams you can see, with their members')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete a team; its protected apis become private')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'add a user to a team (or change whether they are its admin)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'remove a user from a team')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;teams;create' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;teams;list' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;teams;delete' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;teams;add' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--admin', '--admin', [CompletionResultType]::ParameterName, 'a team admin manages the team and owns its protected apis')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;teams;remove' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;teams;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a team (admins only)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the teams you can see, with their members')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete a team; its protected apis become private')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'add a user to a team (or change whether they are its admin)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'remove a user from a team')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;teams;help;create' {
            break
        }
        'cortex;teams;help;list' {
            break
        }
        'cortex;teams;help;delete' {
            break
        }
        'cortex;teams;help;add' {
            break
        }
        'cortex;teams;help;remove' {
            break
        }
        'cortex;teams;help;help' {
            break
        }
        'cortex;tokens' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a token (printed once; only its hash is stored)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list your tokens (an admin sees everyone''s)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'revoke a token by the id `cortex tokens list` shows')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;tokens;create' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'a name to recognise it by in `cortex tokens list`')
            [CompletionResult]::new('--expires-in', '--expires-in', [CompletionResultType]::ParameterName, 'when it expires, e.g. 1h or 720h (default: never)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'the user it is for (admins only; default: you)')
            [CompletionResult]::new('--api', '--api', [CompletionResultType]::ParameterName, 'scope it to one api: it works on that api alone')
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;tokens;list' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;tokens;revoke' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;tokens;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a token (printed once; only its hash is stored)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list your tokens (an admin sees everyone''s)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'revoke a token by the id `cortex tokens list` shows')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;tokens;help;create' {
            break
        }
        'cortex;tokens;help;list' {
            break
        }
        'cortex;tokens;help;revoke' {
            break
        }
        'cortex;tokens;help;help' {
            break
        }
        'cortex;access' {
            [CompletionResult]::new('--access', '--access', [CompletionResultType]::ParameterName, 'who besides its owner may use it: private, protected (a team) or public (everyone)')
            [CompletionResult]::new('--team', '--team', [CompletionResultType]::ParameterName, 'the team of a protected api')
            [CompletionResult]::new('--permission', '--permission', [CompletionResultType]::ParameterName, 'what the team (protected) or everyone (public) may do')
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;predict' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;refresh' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output format')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'override the in-progress api update')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'override the in-progress api update')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;completion' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;version' {
            [CompletionResult]::new('-e', '-e', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'environment to use (default: the configured default, usually "local")')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'cortex;help' {
            [CompletionResult]::new('deploy', 'deploy', [CompletionResultType]::ParameterValue, 'create or update apis from a cortex.yaml')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'get information about apis or jobs')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'stream logs from an api (on a terminal; piped, print them and exit unless -f)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete an api or stop a job')
            [CompletionResult]::new('wait', 'wait', [CompletionResultType]::ParameterValue, 'wait until an api is live or a job has ended (exit 1 if it fails or times out)')
            [CompletionResult]::new('env', 'env', [CompletionResultType]::ParameterValue, 'manage cli environments (which cortex server to talk to)')
            [CompletionResult]::new('server', 'server', [CompletionResultType]::ParameterValue, 'run the cortex server in the foreground, or manage the local one')
            [CompletionResult]::new('users', 'users', [CompletionResultType]::ParameterValue, 'manage the users of a server (admins)')
            [CompletionResult]::new('teams', 'teams', [CompletionResultType]::ParameterValue, 'manage teams and their members')
            [CompletionResult]::new('tokens', 'tokens', [CompletionResultType]::ParameterValue, 'create, list and revoke tokens')
            [CompletionResult]::new('access', 'access', [CompletionResultType]::ParameterValue, 'set who may use an api: private, protected (a team) or public')
            [CompletionResult]::new('predict', 'predict', [CompletionResultType]::ParameterValue, 'make a prediction: post a json file to an api and print its answer')
            [CompletionResult]::new('refresh', 'refresh', [CompletionResultType]::ParameterValue, 'restart every replica of an api with a rolling update (no downtime)')
            [CompletionResult]::new('completion', 'completion', [CompletionResultType]::ParameterValue, 'generate shell completion scripts')
            [CompletionResult]::new('version', 'version', [CompletionResultType]::ParameterValue, 'print the cli and server versions')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'cortex;help;deploy' {
            break
        }
        'cortex;help;get' {
            break
        }
        'cortex;help;logs' {
            break
        }
        'cortex;help;delete' {
            break
        }
        'cortex;help;wait' {
            break
        }
        'cortex;help;env' {
            [CompletionResult]::new('configure', 'configure', [CompletionResultType]::ParameterValue, 'add or update an environment (a remote cortex server)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the configured environments')
            [CompletionResult]::new('default', 'default', [CompletionResultType]::ParameterValue, 'set (or print) the default environment')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete an environment''s configuration')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'print an environment''s token (for scripts and curl)')
            break
        }
        'cortex;help;env;configure' {
            break
        }
        'cortex;help;env;list' {
            break
        }
        'cortex;help;env;default' {
            break
        }
        'cortex;help;env;delete' {
            break
        }
        'cortex;help;env;token' {
            break
        }
        'cortex;help;server' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'show whether the local server is running')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'stop the local server')
            break
        }
        'cortex;help;server;status' {
            break
        }
        'cortex;help;server;stop' {
            break
        }
        'cortex;help;users' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a user and print their first token')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the users (admins only)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete a user; their apis become yours')
            break
        }
        'cortex;help;users;create' {
            break
        }
        'cortex;help;users;list' {
            break
        }
        'cortex;help;users;delete' {
            break
        }
        'cortex;help;teams' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a team (admins only)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list the teams you can see, with their members')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'delete a team; its protected apis become private')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'add a user to a team (or change whether they are its admin)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'remove a user from a team')
            break
        }
        'cortex;help;teams;create' {
            break
        }
        'cortex;help;teams;list' {
            break
        }
        'cortex;help;teams;delete' {
            break
        }
        'cortex;help;teams;add' {
            break
        }
        'cortex;help;teams;remove' {
            break
        }
        'cortex;help;tokens' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'create a token (printed once; only its hash is stored)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'list your tokens (an admin sees everyone''s)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'revoke a token by the id `cortex tokens list` shows')
            break
        }
        'cortex;help;tokens;create' {
            break
        }
        'cortex;help;tokens;list' {
            break
        }
        'cortex;help;tokens;revoke' {
            break
        }
        'cortex;help;access' {
            break
        }
        'cortex;help;predict' {
            break
        }
        'cortex;help;refresh' {
            break
        }
        'cortex;help;completion' {
            break
        }
        'cortex;help;version' {
            break
        }
        'cortex;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
