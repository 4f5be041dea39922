/* redis_server: a private redis-server for tests; see redis_server.h. */
#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int redis_server_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int redis_server_init(struct redis_server *rs)
{
    rs->pid = -1;
    rs->cpu = -1;
    snprintf(rs->dir, sizeof(rs->dir), "/tmp/filtermail-redis-XXXXXX");
    if (mkdtemp(rs->dir) == NULL) {
        fprintf(stderr, "redis_server: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(rs->sock, sizeof(rs->sock), "%s/redis.sock", rs->dir);
    if ((rs->port = redis_server_free_port()) < 0) {
        fprintf(stderr, "redis_server: no free loopback port\n");
        rmdir(rs->dir);
        return -1;
    }
    return 0;
}

redisContext *redis_server_connect(const struct redis_server *rs)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
    if (c != NULL && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

int redis_server_start(struct redis_server *rs)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", rs->port);
    rs->pid = fork();
    if (rs->pid < 0) {
        fprintf(stderr, "redis_server: fork: %s\n", strerror(errno));
        return -1;
    }
    if (rs->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        dup2(null, STDOUT_FILENO);
        if (rs->cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(rs->cpu, &set);
            sched_setaffinity(0, sizeof(set), &set);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", rs->dir, "--unixsocket", rs->sock, "--unixsocketperm",
               "700", "--loglevel", "warning", (char *)NULL);
        fprintf(stderr, "cannot run redis-server: %s (tests/deps.sh installs it)\n",
                strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        redisContext *c = redis_server_connect(rs);
        if (c != NULL) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        }
        if (waitpid(rs->pid, NULL, WNOHANG) == rs->pid) {
            fprintf(stderr, "redis-server exited at start-up\n");
            rs->pid = -1;
            return -1;
        }
        usleep(10000);
    }
    fprintf(stderr, "redis-server did not answer on port %d\n", rs->port);
    redis_server_stop(rs);
    return -1;
}

void redis_server_stop(struct redis_server *rs)
{
    if (rs->pid > 0) {
        kill(rs->pid, SIGCONT);
        kill(rs->pid, SIGTERM);
        waitpid(rs->pid, NULL, 0);
        rs->pid = -1;
    }
}

void redis_server_cleanup(struct redis_server *rs)
{
    redis_server_stop(rs);
    unlink(rs->sock);
    rmdir(rs->dir);
}
