/*
 * Runs a command and samples its anonymous resident memory (RssAnon in
 * /proc/PID/status) every 2 milliseconds while it runs; when it has exited,
 * prints "rss_peak <KiB>" and "elapsed <seconds>" (wall time, from before
 * the fork to the exit) and exits with its status. The kernel keeps no
 * peak of RssAnon (VmHWM counts the LMDB map's file pages too), hence the
 * sampling. -i and -o give the command's stdin and stdout (files), so that
 * its output does not mix with the report.
 *
 *   rss_peak [-i IN] [-o OUT] COMMAND ARGS...
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long rss_anon(pid_t pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "RssAnon:", 8) == 0) {
      kib = strtol(line + 8, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

/* In the child: opens `path` as descriptor `fd`; exits on failure. */
static void redirect(const char *path, int fd, int flags) {
  if (path == NULL) return;
  int f = open(path, flags, 0644);
  if (f < 0 || dup2(f, fd) < 0) {
    perror(path);
    _exit(127);
  }
  close(f);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  int first = 1;
  while (first + 1 < argc &&
         (strcmp(argv[first], "-i") == 0 || strcmp(argv[first], "-o") == 0)) {
    if (argv[first][1] == 'i')
      in = argv[first + 1];
    else
      out = argv[first + 1];
    first += 2;
  }
  if (first >= argc) {
    fputs("usage: rss_peak [-i IN] [-o OUT] COMMAND ARGS...\n", stderr);
    return 2;
  }
  fflush(stdout);
  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 2;
  }
  if (pid == 0) {
    redirect(in, 0, O_RDONLY);
    redirect(out, 1, O_WRONLY | O_CREAT | O_TRUNC);
    execvp(argv[first], argv + first);
    perror(argv[first]);
    _exit(127);
  }
  long peak = 0;
  int status;
  const struct timespec ms = {0, 2000000}; /* 2 ms */
  for (;;) {
    long kib = rss_anon(pid);
    if (kib > peak) peak = kib;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) {
      perror("waitpid");
      return 2;
    }
    nanosleep(&ms, NULL);
  }
  double t1 = now();
  printf("rss_peak %ld\nelapsed %.6f\n", peak, t1 - t0);
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "rss_peak: %s killed by signal %d\n", argv[first],
            WTERMSIG(status));
    return 128 + WTERMSIG(status);
  }
  return WEXITSTATUS(status);
}
