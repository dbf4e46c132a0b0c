// The floor of the thread-per-connection model for the HTTP table: a thread per connection, blocking I/O,
// the least a static file server can do per request (recv, openat, fstat, pread + send or send + sendfile,
// close), keep-alive, no logging. Serves GET for files beneath ROOT; anything else is a 404 and a close.
//
//     http_threads PORT ROOT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int root;

static int send_all(int fd, const char *bytes, size_t count) {
    while (count > 0) {
        ssize_t sent = send(fd, bytes, count, MSG_NOSIGNAL);
        if (sent <= 0) return -1;
        bytes += sent;
        count -= (size_t)sent;
    }
    return 0;
}

// One request: the file named by the request line's target, relative to ROOT. 0 to go on, -1 to close.
static int respond(int fd, const char *request, size_t length) {
    const char *target = memchr(request, ' ', length);
    if (target == NULL || strncmp(request, "GET ", 4) != 0) return -1;
    const char *end = memchr(target + 1, ' ', length - (size_t)(target + 1 - request));
    char path[4096];
    if (end == NULL || target[1] != '/' || end - target - 2 <= 0 || end - target - 2 >= (long)sizeof path) return -1;
    memcpy(path, target + 2, (size_t)(end - target - 2));
    path[end - target - 2] = 0;
    if (strstr(path, "..") != NULL) return -1;

    int file = openat(root, path, O_RDONLY | O_CLOEXEC);
    struct stat info;
    if (file < 0 || fstat(file, &info) < 0 || !S_ISREG(info.st_mode)) {
        if (file >= 0) close(file);
        static const char missing[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        send_all(fd, missing, sizeof missing - 1);
        return -1;
    }
    char out[512 + 16384];
    int head = snprintf(out, 512,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %lld\r\n\r\n",
                        (long long)info.st_size);
    int status = 0;
    if (info.st_size <= 16384) {  // head and body in one send
        ssize_t got = pread(file, out + head, (size_t)info.st_size, 0);
        status = got == info.st_size ? send_all(fd, out, (size_t)head + (size_t)got) : -1;
    } else {
        status = send_all(fd, out, (size_t)head);
        off_t offset = 0;
        while (status == 0 && offset < info.st_size) {
            if (sendfile(fd, file, &offset, (size_t)(info.st_size - offset)) <= 0) status = -1;
        }
    }
    close(file);
    return status;
}

static void *serve(void *argument) {
    int fd = (int)(intptr_t)argument;
    char buffer[8192];
    size_t have = 0;
    for (;;) {
        char *blank;
        while ((blank = memmem(buffer, have, "\r\n\r\n", 4)) == NULL) {
            if (have == sizeof buffer) goto done;
            ssize_t count = recv(fd, buffer + have, sizeof buffer - have, 0);
            if (count <= 0) goto done;
            have += (size_t)count;
        }
        size_t used = (size_t)(blank + 4 - buffer);
        if (respond(fd, buffer, used) < 0) goto done;
        memmove(buffer, buffer + used, have - used);
        have -= used;
    }
done:
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: http_threads PORT ROOT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    root = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (root < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 1024) < 0) {
        perror("http_threads");
        return 1;
    }
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_t thread;
        if (pthread_create(&thread, &attributes, serve, (void *)(intptr_t)fd) != 0) close(fd);
    }
}
