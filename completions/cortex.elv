
use builtin;
use str;

set edit:completion:arg-completer[cortex] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'cortex'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'cortex'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand deploy 'create or update apis from a cortex.yaml'
            cand get 'get information about apis or jobs'
            cand logs 'stream logs from an api (on a terminal; piped, print them and exit unless -f)'
            cand delete 'delete an api or stop a job'
            cand wait 'wait until an api is live or a job has ended (exit 1 if it fails or times out)'
            cand env 'manage cli environments (which cortex server to talk to)'
            cand server 'run the cortex server in the foreground, or manage the local one'
            cand users 'manage the users of a server (admins)'
            cand teams 'manage teams and their members'
            cand tokens 'create, list and revoke tokens'
            cand access 'set who may use an api: private, protected (a team) or public'
            cand predict 'make a prediction: post a json file to an api and print its answer'
            cand refresh 'restart every replica of an api with a rolling update (no downtime)'
            cand completion 'generate shell completion scripts'
            cand version 'print the cli and server versions'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;deploy'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand --timeout 'with --wait: how long to wait, e.g. 90s, 10m, 1h'
            cand -o 'output format (with --wait: the `cortex get API -o json` documents, at the end)'
            cand --output 'output format (with --wait: the `cortex get API -o json` documents, at the end)'
            cand -f 'override the in-progress api update'
            cand --force 'override the in-progress api update'
            cand -y 'skip prompts'
            cand --yes 'skip prompts'
            cand --wait 'then wait until every api of the deploy is live (exit 1 as soon as one fails)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;get'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -w 're-run the command every 2 seconds'
            cand --watch 're-run the command every 2 seconds'
            cand --failed 'with a job id: list every batch that failed for good, not only the first 10'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;logs'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand --tail 'only the last N lines'
            cand -o 'output format (json: one `{"line": ...}` document per log line)'
            cand --output 'output format (json: one `{"line": ...}` document per log line)'
            cand -f 'keep streaming new lines (the default on a terminal)'
            cand --follow 'keep streaming new lines (the default on a terminal)'
            cand --no-follow 'print the lines there are and exit (the default when stdout is not a terminal)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;delete'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -f 'delete without confirmation, even an api that a traffic splitter uses'
            cand --force 'delete without confirmation, even an api that a traffic splitter uses'
            cand -y 'skip prompts'
            cand --yes 'skip prompts'
            cand -c 'keep the api''s uploaded project on the server for an hour, so deploying it again uploads nothing'
            cand --keep-cache 'keep the api''s uploaded project on the server for an hour, so deploying it again uploads nothing'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;wait'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand --timeout 'how long to wait, e.g. 90s, 10m, 1h'
            cand -o 'output format (json, yaml: the `cortex get API [JOB_ID] -o json` document, at the end)'
            cand --output 'output format (json, yaml: the `cortex get API [JOB_ID] -o json` document, at the end)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;env'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand configure 'add or update an environment (a remote cortex server)'
            cand list 'list the configured environments'
            cand default 'set (or print) the default environment'
            cand delete 'delete an environment''s configuration'
            cand token 'print an environment''s token (for scripts and curl)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;env;configure'= {
            cand --endpoint 'the server''s base url, e.g. https://cortex.example.com'
            cand --token 'the token to authenticate with'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;env;list'= {
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;env;default'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;env;delete'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;env;token'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;env;help'= {
            cand configure 'add or update an environment (a remote cortex server)'
            cand list 'list the configured environments'
            cand default 'set (or print) the default environment'
            cand delete 'delete an environment''s configuration'
            cand token 'print an environment''s token (for scripts and curl)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;env;help;configure'= {
        }
        &'cortex;env;help;list'= {
        }
        &'cortex;env;help;default'= {
        }
        &'cortex;env;help;delete'= {
        }
        &'cortex;env;help;token'= {
        }
        &'cortex;env;help;help'= {
        }
        &'cortex;server'= {
            cand --listen 'address to listen on'
            cand --data-dir 'where the server keeps its database, bundles and logs (default: <config dir>/local, the local environment''s server)'
            cand --min-free-disk-mb 'refuse deploys (507) while the data directory''s disk has less free space than this (MiB)'
            cand --log-tail-lines 'lines of stdout and of stderr per replica that `GET /api/v2/deploy/{id}/logs` returns'
            cand --data-root 'let batch jobs read `delimited_files` from this directory (paths outside it are refused)'
            cand --allow-fetch 'let batch jobs fetch `delimited_files` URLs from this network (CIDR) or host name too, although it is loopback, private or otherwise special (repeatable)'
            cand --max-connections 'open client connections at most; more wait to be accepted (default: half the open-file limit, which the server raises to its hard limit)'
            cand --header-read-timeout 'close a connection that has not sent a request''s headers this long after it opened or after its previous answer (seconds)'
            cand --idle-timeout 'close a keep-alive connection that sends nothing this long after its last answer (seconds)'
            cand --replica-idle-timeout 'close a pooled connection from the gateway to a replica after this long unused (seconds)'
            cand --max-buffered-bodies-mb 'memory that prediction bodies sent without a Content-Length (read whole before they go to a replica) may use together; past it they are refused with 503 (MiB)'
            cand --log-max-mb 'cap each replica log file at this size (MiB); past it the file is rotated, and one rotated generation is kept'
            cand --max-unpacked-mb 'refuse bundles (422) that unpack to more than this (MiB)'
            cand --max-bundle-files 'refuse bundles (422) that hold more files than this'
            cand --max-batch-workers 'batch workers that may run at once across all jobs; the others wait as pending'
            cand --spare-interpreters 'python interpreters kept started, with the runtime imported, for python replicas to start from (each becomes one replica); 0 starts every replica anew'
            cand --sandbox 'what replicas may reach: standard (everything but the server''s files and other apis''), strict (system paths, their own files and --replica-path directories only), or off'
            cand --replica-path 'a directory every replica may read (or read and write, with :rw) in strict mode (repeatable)'
            cand --replica-user 'the unprivileged user replicas run as when the server runs as root [default: nobody]'
            cand --max-replica-pids 'processes and threads each run of a replica, batch worker or preparation may have (a fork or thread start past it fails); 0: no limit. Needs the pids cgroup controller'
            cand --engine 'what runs replicas and batch workers: local (child processes of the server) or ray (actors of the Ray cluster at --ray-address)'
            cand --ray-address 'the Ray cluster''s dashboard address, e.g. http://HEAD:8265 (with --engine ray)'
            cand --ray-token-file 'a file holding the Ray cluster''s token (its nodes'' RAY_AUTH_TOKEN)'
            cand --ray-listen 'where the server listens for the Ray drivers and the nodes'' bundle downloads [default: the --listen address, any free port]'
            cand --ray-python 'the python on the Ray nodes that runs cortex''s driver (it must import ray)'
            cand --port-fallback 'if the port is taken, listen on a free one instead'
            cand --require-tokens 'a token on every route, also when listening on loopback only (where predictions, jobs and /metrics otherwise take callers without one): for a server behind a reverse proxy, or on a machine other people use'
            cand --allow-unsandboxed-replicas 'listen beyond loopback even when replicas cannot be sandboxed (no Landlock, or --sandbox off)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand status 'show whether the local server is running'
            cand stop 'stop the local server'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;server;status'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;server;stop'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;server;help'= {
            cand status 'show whether the local server is running'
            cand stop 'stop the local server'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;server;help;status'= {
        }
        &'cortex;server;help;stop'= {
        }
        &'cortex;server;help;help'= {
        }
        &'cortex;users'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'create a user and print their first token'
            cand list 'list the users (admins only)'
            cand delete 'delete a user; their apis become yours'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;users;create'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand --admin 'a global admin may do everything'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;users;list'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;users;delete'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;users;help'= {
            cand create 'create a user and print their first token'
            cand list 'list the users (admins only)'
            cand delete 'delete a user; their apis become yours'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;users;help;create'= {
        }
        &'cortex;users;help;list'= {
        }
        &'cortex;users;help;delete'= {
        }
        &'cortex;users;help;help'= {
        }
        &'cortex;teams'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'create a team (admins only)'
            cand list 'list the teams you can see, with their members'
            cand delete 'delete a team; its protected apis become private'
            cand add 'add a user to a team (or change whether they are its admin)'
            cand remove 'remove a user from a team'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;teams;create'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;teams;list'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;teams;delete'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;teams;add'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand --admin 'a team admin manages the team and owns its protected apis'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;teams;remove'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;teams;help'= {
            cand create 'create a team (admins only)'
            cand list 'list the teams you can see, with their members'
            cand delete 'delete a team; its protected apis become private'
            cand add 'add a user to a team (or change whether they are its admin)'
            cand remove 'remove a user from a team'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;teams;help;create'= {
        }
        &'cortex;teams;help;list'= {
        }
        &'cortex;teams;help;delete'= {
        }
        &'cortex;teams;help;add'= {
        }
        &'cortex;teams;help;remove'= {
        }
        &'cortex;teams;help;help'= {
        }
        &'cortex;tokens'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'create a token (printed once; only its hash is stored)'
            cand list 'list your tokens (an admin sees everyone''s)'
            cand revoke 'revoke a token by the id `cortex tokens list` shows'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;tokens;create'= {
            cand --name 'a name to recognise it by in `cortex tokens list`'
            cand --expires-in 'when it expires, e.g. 1h or 720h (default: never)'
            cand --user 'the user it is for (admins only; default: you)'
            cand --api 'scope it to one api: it works on that api alone'
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;tokens;list'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;tokens;revoke'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;tokens;help'= {
            cand create 'create a token (printed once; only its hash is stored)'
            cand list 'list your tokens (an admin sees everyone''s)'
            cand revoke 'revoke a token by the id `cortex tokens list` shows'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;tokens;help;create'= {
        }
        &'cortex;tokens;help;list'= {
        }
        &'cortex;tokens;help;revoke'= {
        }
        &'cortex;tokens;help;help'= {
        }
        &'cortex;access'= {
            cand --access 'who besides its owner may use it: private, protected (a team) or public (everyone)'
            cand --team 'the team of a protected api'
            cand --permission 'what the team (protected) or everyone (public) may do'
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;predict'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;refresh'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -f 'override the in-progress api update'
            cand --force 'override the in-progress api update'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;completion'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;version'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;help'= {
            cand deploy 'create or update apis from a cortex.yaml'
            cand get 'get information about apis or jobs'
            cand logs 'stream logs from an api (on a terminal; piped, print them and exit unless -f)'
            cand delete 'delete an api or stop a job'
            cand wait 'wait until an api is live or a job has ended (exit 1 if it fails or times out)'
            cand env 'manage cli environments (which cortex server to talk to)'
            cand server 'run the cortex server in the foreground, or manage the local one'
            cand users 'manage the users of a server (admins)'
            cand teams 'manage teams and their members'
            cand tokens 'create, list and revoke tokens'
            cand access 'set who may use an api: private, protected (a team) or public'
            cand predict 'make a prediction: post a json file to an api and print its answer'
            cand refresh 'restart every replica of an api with a rolling update (no downtime)'
            cand completion 'generate shell completion scripts'
            cand version 'print the cli and server versions'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;help;deploy'= {
        }
        &'cortex;help;get'= {
        }
        &'cortex;help;logs'= {
        }
        &'cortex;help;delete'= {
        }
        &'cortex;help;wait'= {
        }
        &'cortex;help;env'= {
            cand configure 'add or update an environment (a remote cortex server)'
            cand list 'list the configured environments'
            cand default 'set (or print) the default environment'
            cand delete 'delete an environment''s configuration'
            cand token 'print an environment''s token (for scripts and curl)'
        }
        &'cortex;help;env;configure'= {
        }
        &'cortex;help;env;list'= {
        }
        &'cortex;help;env;default'= {
        }
        &'cortex;help;env;delete'= {
        }
        &'cortex;help;env;token'= {
        }
        &'cortex;help;server'= {
            cand status 'show whether the local server is running'
            cand stop 'stop the local server'
        }
        &'cortex;help;server;status'= {
        }
        &'cortex;help;server;stop'= {
        }
        &'cortex;help;users'= {
            cand create 'create a user and print their first token'
            cand list 'list the users (admins only)'
            cand delete 'delete a user; their apis become yours'
        }
        &'cortex;help;users;create'= {
        }
        &'cortex;help;users;list'= {
        }
        &'cortex;help;users;delete'= {
        }
        &'cortex;help;teams'= {
            cand create 'create a team (admins only)'
            cand list 'list the teams you can see, with their members'
            cand delete 'delete a team; its protected apis become private'
            cand add 'add a user to a team (or change whether they are its admin)'
            cand remove 'remove a user from a team'
        }
        &'cortex;help;teams;create'= {
        }
        &'cortex;help;teams;list'= {
        }
        &'cortex;help;teams;delete'= {
        }
        &'cortex;help;teams;add'= {
        }
        &'cortex;help;teams;remove'= {
        }
        &'cortex;help;tokens'= {
            cand create 'create a token (printed once; only its hash is stored)'
            cand list 'list your tokens (an admin sees everyone''s)'
            cand revoke 'revoke a token by the id `cortex tokens list` shows'
        }
        &'cortex;help;tokens;create'= {
        }
        &'cortex;help;tokens;list'= {
        }
        &'cortex;help;tokens;revoke'= {
        }
        &'cortex;help;access'= {
        }
        &'cortex;help;predict'= {
        }
        &'cortex;help;refresh'= {
        }
        &'cortex;help;completion'= {
        }
        &'cortex;help;version'= {
        }
        &'cortex;help;help'= {
        }
    ]
    $completions[$command]
}
