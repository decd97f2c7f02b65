
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
            cand logs 'stream logs from an api'
            cand delete 'delete an api or stop a job'
            cand env 'manage cli environments (which cortex server to talk to)'
            cand server 'run the cortex server in the foreground, or manage the local one'
            cand completion 'generate shell completion scripts'
            cand version 'print the cli and server versions'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'cortex;deploy'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand -o 'output format'
            cand --output 'output format'
            cand -f 'override the in-progress api update'
            cand --force 'override the in-progress api update'
            cand -y 'skip prompts'
            cand --yes 'skip prompts'
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
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'cortex;logs'= {
            cand -e 'environment to use (default: the configured default, usually "local")'
            cand --env 'environment to use (default: the configured default, usually "local")'
            cand --tail 'only the last N lines'
            cand -f 'keep streaming new lines'
            cand --follow 'keep streaming new lines'
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
            cand -f 'delete the api without confirmation'
            cand --force 'delete the api without confirmation'
            cand -y 'skip prompts'
            cand --yes 'skip prompts'
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
            cand --port-fallback 'if the port is taken, listen on a free one instead'
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
            cand logs 'stream logs from an api'
            cand delete 'delete an api or stop a job'
            cand env 'manage cli environments (which cortex server to talk to)'
            cand server 'run the cortex server in the foreground, or manage the local one'
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
        &'cortex;help;completion'= {
        }
        &'cortex;help;version'= {
        }
        &'cortex;help;help'= {
        }
    ]
    $completions[$command]
}
